"""The job runner: runs a repository's workflows, each job instance in a fresh VM.

* :mod:`.context`: the repository (git), the event and the ``github``/``runner`` contexts;
* :mod:`.engine`: scheduling jobs (needs, matrix, fail-fast, max-parallel, concurrency,
  reusable workflows);
* :mod:`.steps`: running steps in a VM (scripts, env files, commands, composite actions,
  checkout); :mod:`.actions` finds actions; :mod:`.output` handles output (masked with
  :mod:`vmrunner.workflow.masking`); :mod:`.hashfiles` computes ``hashFiles``;
  concurrency groups are shared between processes through :mod:`vmrunner.store.concurrency`.

The service API is :mod:`vmrunner.services.workflows`.
"""
