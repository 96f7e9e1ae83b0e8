"""The worker side: tasks, the sender and its decision, the dispatcher and the worker process."""
