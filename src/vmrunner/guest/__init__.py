"""The guest side of vmrunner.

* ``agent.py`` runs inside the guest VM (standard library only, one file, copied
  into the image); its module docstring is the specification of the wire protocol.
* ``protocol.py`` is the host's pure codec for that protocol (frames to typed messages).
* ``transfer.py`` builds and extracts the tar streams behind ``copy_in``/``copy_out``;
  ``safetar.py`` extracts the guest's copy_out archive without trusting it.
* ``channel.py`` is the host's asyncio client: :class:`~vmrunner.guest.channel.GuestChannel`.

Importing this package imports none of them.
"""
