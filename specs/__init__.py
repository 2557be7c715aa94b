"""The model zoo, installed as the package data `archc.zoo` (this file exists only so that an editable install
finds the folder)."""
