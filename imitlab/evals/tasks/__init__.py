"""Built-in benchmark declarations: every module here registers its tasks on import."""
