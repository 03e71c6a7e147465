"""Framework adapters, thin layers over StepMonitor: `hf.GpulensCallback` (a `transformers.TrainerCallback`)
and `lightning.GpulensCallback` (a `pytorch_lightning.Callback`). Each class is built on first access, so
importing this package needs neither framework.
"""
