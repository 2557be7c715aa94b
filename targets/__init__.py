"""Named compile targets, one TOML file each; installed as the package data `archc.target_defs` (this file
exists only so that an editable install finds the folder). `archc targets` lists them; `archc/targets.py` reads
them."""
