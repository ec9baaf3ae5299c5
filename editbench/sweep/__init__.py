"""`editbench sweep`: a grid of benchmark runs (methods x tasks x edit counts x seeds x `--set` values).

- `grid`: the grid and its expansion into `SweepRun`s (one `editbench run` each);
- `presets`: the shipped grids (`grids/*.toml`, e.g. `embedded`, `ci`, the paper's `table1`..`fig9`);
- `identity`: what makes two runs the same experiment, for a planned run and for a stored record;
- `plan`: the skip / run / redo decision of every run against the results store, artifact order;
- `local` / `ray_executor`: run the plan, each run in its own `editbench run` process;
- `compare`: the reproduction check of new records against committed ones (`--compare results`);
- `cli`: the click command.
"""
