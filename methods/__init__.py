"""Built-in editing methods of editbench (installed as `editbench.methods`); one folder per method."""
