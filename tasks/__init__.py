"""Built-in tasks of editbench (installed as `editbench.tasks`); each family has its own folder."""
