"""Pictures of `edge-emo listen` for the people around the wearer, in a browser: the live page of
`edge-emo listen --serve` (server.py) and the timeline of a listen JSON log, `edge-emo timeline`
(timeline.py). Standard library only, every asset in `assets/` (no CDN): the page works on a phone on the
same network as the device, offline."""

# One colour per emotion, by the bundle's emotion order (the names come from the manifest, never from
# here): the Okabe-Ito palette, told apart with every common colour-vision deficiency.
PALETTE = ("#E69F00", "#0072B2", "#D55E00", "#CC79A7", "#009E73", "#56B4E9", "#F0E442", "#000000")


def colors(emotions: tuple[str, ...]) -> dict[str, str]:
    """The colour of each emotion (the palette repeats past eight)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(emotions)}
