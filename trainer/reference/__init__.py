"""The reference trainer (`python -m gpulens.trainer.reference`, `gpulens train`): see `run.py`."""
