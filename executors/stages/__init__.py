"""The stages of one anneal job: materialise → train → evaluate, each resumable on its own.

A stage is given a :class:`~executors.stages.context.WorkerConfig` and the job's spec, and
keeps everything it makes in the job's folder (:class:`~executors.stages.context.JobFiles`).
A stage whose record is complete (the packed data's manifest, the final model's
``train_state.json``) is skipped when the job runs again; the records are typed models
(:mod:`executors.stages.records`). Nothing here knows about the daemon or its journal:
:func:`executors.stages.pipeline.run_stages` takes two callbacks (may the job enter a
stage; training progress), so the daemon's worker and a batch job's script run the same
stages.

- ``context``: the worker's configuration, the job folder's layout, how a stage stops;
- ``records``: the typed stage records read back from disk;
- ``materialize``: source and replay tokens through the plugins, packed and shuffled;
- ``launch``: the DeepSpeed config, the launcher's command and environment, and the
  clean-up of a launch's shared-memory buffers;
- ``train``: the launcher run to its end, its progress relayed and its heartbeat watched;
- ``report``: lm-eval on the final model and the job's result;
- ``pipeline``: the three stages in order.
"""

from __future__ import annotations
