"""The ground floor: the emotions edge-emo names and the scale of their intensities. Every stage reads these
from here (a bundle also carries its emotion order in its manifest, which the runtime reads instead)."""

# The order of the six intensity columns in every corpus file and of a trained model's outputs.
EMOTIONS: tuple[str, ...] = ("happiness", "sadness", "anger", "surprise", "disgust", "fear")
MAX_INTENSITY = 3.0  # intensities run 0..3 (the CMU-MOSEI scale); outputs are clipped to it
PRESENT = 0.5  # an emotion is present (F1, the readout, the dominant cue) at an intensity of at least this
