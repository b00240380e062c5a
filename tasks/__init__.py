"""SeqIO registrations. Importing `tasks` registers a Task per trace file under
$ORCA_JAX_DATA_DIR (and the Mixtures of its mixtures.json); call
`tasks.traces.register_trace_tasks(data_dir=...)` (or set it in gin) for another directory."""

from tasks.traces import register_trace_tasks

register_trace_tasks()
