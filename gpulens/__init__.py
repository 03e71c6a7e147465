"""gpulens: are the GPUs busy, is the training healthy, and what did it cost?"""

__version__ = "0.1.0"
