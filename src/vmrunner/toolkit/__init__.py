"""Local artifact and cache services that GitHub's official toolkit clients talk to.

``@actions/artifact`` (upload-artifact/download-artifact v4) and ``@actions/cache``
(actions/cache v4, cache service v2) reach a run's services through the variables GitHub
sets (:mod:`.run`), authenticated by the job's token (:mod:`.tokens`): Twirp methods
(:mod:`.twirp`) and signed blob URLs (:mod:`.http`, :mod:`.blobs`) over per-run artifacts
(:mod:`.artifacts`) and the host's cache (:mod:`.cachestore`, :mod:`.matching`), served
on a Unix socket (:mod:`.service`) that each job VM reaches through a forward over a
virtio-serial port (:mod:`.tunnel`, :mod:`.guest_forward`).
"""
