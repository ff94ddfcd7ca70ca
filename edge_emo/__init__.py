"""edge-emo: self-supervised speech emotion recognition for wearables."""

__version__ = "0.1.0"
