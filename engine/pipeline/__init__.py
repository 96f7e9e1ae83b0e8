"""The worker side: tasks, the sender, the dispatcher and the worker process."""
