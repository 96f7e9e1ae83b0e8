"""What a front end may call: campaigns, preview, failed jobs, supervise, selftest."""
