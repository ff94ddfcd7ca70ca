"""The openSMILE engine behind both extractors: one LLD-only configuration per feature set, built from the
config files shipped inside the `opensmile` package (only the components its frames need), with an external
audio source and an external sink.

The same configuration serves offline and streaming extraction; only the wave level differs (a growing
buffer that takes a whole clip at once, or a fixed ring buffer fed chunk by chunk). The levels after it are
ring buffers in both cases, so frame values are identical (tests check both against `opensmile.Smile`)."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
from collections.abc import Iterator
from types import ModuleType

from .spec import FeatureMismatchError, FeatureSet, FeatureSpec


def _opensmile_root() -> str:
    """The installed `opensmile` package's folder, found without importing the package."""
    found = importlib.util.find_spec("opensmile")
    if found is None or not found.submodule_search_locations:
        raise ImportError("edge-emo needs the 'opensmile' package (pip install opensmile)")
    return found.submodule_search_locations[0]


def _load_smile_lib() -> ModuleType:
    """opensmile's ctypes binding of libSMILEapi (`opensmile/core/lib.py`, which needs only ctypes and numpy),
    run from the installed package's file without the package's `__init__`: that one imports pandas and
    audinterface, about 100 MB resident that a wearable has no use for. A process that has imported
    opensmile already (training, tests) shares its module instead of loading the binding twice."""
    if "opensmile.core.lib" in sys.modules:
        return sys.modules["opensmile.core.lib"]
    path = os.path.join(_opensmile_root(), "core", "lib.py")
    spec = importlib.util.spec_from_file_location(f"{__name__}._opensmile_lib", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load openSMILE's binding from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


smile_lib = _load_smile_lib()
OpenSMILE = smile_lib.OpenSMILE

SOURCE = "extsource"
SINK = "extsink"
HOP_S = 0.01  # the hop openSMILE's shipped configurations use, and the default
# The hops this front end offers: 20 ms computes every frame-level component half as often (about half of the
# front end's CPU, and half the model steps); the frames are the same descriptors over the same windows.
HOPS_S = (0.01, 0.02)
SAMPLE_RATE = 16000
# The wave level of the streaming configuration: 2 s of audio. Pitch jitter/shimmer read the wave with the
# lag of the Viterbi pitch smoother, so it must hold more than that lag (1.5 s of frames); one write may
# take at most this many samples minus what the readers have not consumed yet.
STREAM_WAVE_SAMPLES = 2 * SAMPLE_RATE

_CONFIG_ROOT = os.path.join(_opensmile_root(), "core", "config")

_EGEMAPS_INCLUDES = ("gemaps/v01b/GeMAPSv01b_core.lld.conf.inc", "egemaps/v02/eGeMAPSv02_core.lld.conf.inc")
_EGEMAPS_LEVELS = "egemapsv02_lldsetE_smo;egemapsv02_lldsetF_smo"

# Per feature set: the shipped LLD include files and the levels whose concatenation is the LLD frame
# (the same as the `lld` level of the shipped eGeMAPSv02.conf and ComParE_2016.conf).
_LLD = {
    FeatureSet.egemaps: (_EGEMAPS_INCLUDES, _EGEMAPS_LEVELS),
    FeatureSet.egemaps_lite: (_EGEMAPS_INCLUDES, _EGEMAPS_LEVELS),
    FeatureSet.compare: (
        ("compare/ComParE_2016_core.lld.conf.inc",),
        "is13_lld_nzsmo;is13_lldA_smo;is13_lldB_smo",
    ),
}


# Settings that differ from the shipped includes: section -> key -> value. egemaps-lite's frequency-related
# selection keeps F0, jitter and shimmer and reads neither formants nor harmonics, so the components that
# compute those (spectrum resampling, LPC, formant tracking, harmonics and HNR: about half of eGeMAPS's CPU)
# are left out with everything else no frame needs. Every value it keeps is eGeMAPS's, bit for bit (tested).
_SETTINGS = {
    FeatureSet.egemaps_lite: {
        "egemapsv02_lldSetSelectorF": {
            "reader.dmLevel": "gemapsv01b_logPitch;gemapsv01b_jitterShimmer",
            "selected": "F0finalLog;jitterLocal;shimmerLocalDB",
            "newNames": "F0semitoneFrom27.5Hz;jitterLocal;shimmerLocaldB",
        }
    }
}


_SECTION = re.compile(r"^\[(\w+):(\w+)\]\s*$")  # [component:type]
_INSTANCE = re.compile(r"^\s*instance\[(\w+)\]\.type\s*=")


def _entries(text: str) -> Iterator[tuple[str, str, str, str]]:
    """(component, its type, key, value) of every `key = value` line inside a `[component:type]` section."""
    component = kind = None
    for line in text.splitlines():
        section = _SECTION.match(line.strip())
        if section:
            component, kind = section.groups()
        elif component and kind and "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            yield component, kind, key, value


def _hop_settings(texts: list[str], hop_s: float) -> dict[str, dict[str, str]]:
    """Settings that move every framer of the shipped includes to `hop_s` (the windows keep their length) and
    keep the Viterbi pitch smoother's buffer the same length of time (it counts frames: 0.4 s in eGeMAPS at
    10 ms), so that it weighs as much of the pitch contour. Nothing at 10 ms. (A 20 ms frame still leaves
    openSMILE later after its audio than a 10 ms one, 100-120 ms against 80 ms: benchmarks/README.md.)"""
    if hop_s == HOP_S:
        return {}
    settings: dict[str, dict[str, str]] = {}
    for component, kind, key, value in (entry for text in texts for entry in _entries(text)):
        if kind == "cFramer" and key == "frameStep":
            settings.setdefault(component, {})[key] = f"{hop_s:g}"
        elif kind == "cPitchSmootherViterbi" and key == "bufferLength":
            settings.setdefault(component, {})[key] = str(max(1, round(int(value) * HOP_S / hop_s)))
    return settings


def check_hop(hop_s: float) -> float:
    """`hop_s` if this front end offers it, else a one-line error naming the hops it offers."""
    for offered in HOPS_S:
        if abs(hop_s - offered) < 1e-9:
            return offered
    ms = ", ".join(f"{h * 1000:g}" for h in HOPS_S)
    raise ValueError(f"openSMILE frames come at a hop of {ms} ms here, not {hop_s * 1000:g} ms")


def extractable_sets() -> tuple[FeatureSet, ...]:
    """The feature sets this openSMILE front end extracts from audio."""
    return tuple(_LLD)


class OpenSmileError(RuntimeError):
    """openSMILE failed to load its configuration or stopped with an error."""


def _feature_set(feature_set: FeatureSet | str) -> FeatureSet:
    try:
        fs = FeatureSet(feature_set)
    except ValueError:
        known = ", ".join(f.value for f in FeatureSet)
        raise ValueError(f"unknown feature set '{feature_set}' (known: {known})") from None
    if fs not in _LLD:
        raise ValueError(
            f"feature set '{fs.value}' has no audio extractor: its frames are precomputed "
            f"(extractable sets: {', '.join(f.value for f in _LLD)})"
        )
    return fs


def _needed_components(texts: list[str], levels: list[str]) -> set[str]:
    """The components whose output the given data-memory levels are computed from (read back from every
    `*.dmLevel` input, e.g. `reader.dmLevel`, `F0reader.dmLevel`, to the wave level)."""
    reads: dict[str, list[str]] = {}
    writer_of: dict[str, str] = {}
    for component, _, key, value in (entry for text in texts for entry in _entries(text)):
        if key.endswith("dmLevel"):
            names = [name.strip() for name in value.split(";") if name.strip()]
            if key == "writer.dmLevel":
                writer_of.update((name, component) for name in names)
            else:
                reads.setdefault(component, []).extend(names)
    needed: set[str] = set()
    todo = list(levels)
    while todo:
        component = writer_of.get(todo.pop())
        if component is not None and component not in needed:
            needed.add(component)
            todo.extend(reads.get(component, []))
    return needed


def _with_settings(text: str, settings: dict[str, dict[str, str]]) -> str:
    """`text` with the given keys of the given sections (those of them it has) set to other values."""
    out, component = [], None
    for line in text.splitlines():
        section = _SECTION.match(line.strip())
        if section:
            component = section.group(1)
        elif component in settings and "=" in line:
            key = line.split("=", 1)[0].strip()
            if key in settings[component]:
                line = f"{key} = {settings[component][key]}"
        out.append(line)
    return "\n".join(out)


def _check_settings(texts: list[str], settings: dict[str, dict[str, str]]) -> None:
    """Every setting must have found its key: an openSMILE release that renamed one would otherwise emit
    other frames under the same name."""
    text = "\n".join(texts)
    for component, keys in settings.items():
        for key, value in keys.items():
            if f"{key} = {value}" not in text:
                raise OpenSmileError(f"openSMILE's configuration has no '{key}' in [{component}] to set")


@functools.cache
def _lld_components(feature_set: FeatureSet, hop_s: float = HOP_S) -> str:
    """The shipped LLD include files of `feature_set`, inlined, declaring only the components its frames need.

    The shipped includes also declare the selectors and smoothers that feed the functionals of the full
    configurations (eGeMAPS: 25 of its 54 components); nothing here reads them, but openSMILE runs every
    declared component on every tick. Left out, the frames are the same (tests compare them with
    `opensmile.Smile`) and listening live costs less. Their sections stay; a section without an instance is
    never read."""
    includes, levels = _LLD[feature_set]
    shipped = []
    for include in includes:
        with open(os.path.join(_CONFIG_ROOT, include), encoding="utf-8") as f:
            shipped.append(f.read())
    settings = {component: dict(keys) for component, keys in _SETTINGS.get(feature_set, {}).items()}
    for component, keys in _hop_settings(shipped, hop_s).items():
        settings.setdefault(component, {}).update(keys)
    texts = [_with_settings(text, settings) for text in shipped]
    _check_settings(texts, settings)
    needed = _needed_components(texts, levels.split(";"))
    kept = []
    for text in texts:
        for line in text.splitlines():
            instance = _INSTANCE.match(line)
            if instance is None or instance.group(1) in needed:
                kept.append(line)
    return "\n".join(kept)


def _config_text(feature_set: FeatureSet, streaming: bool, hop_s: float = HOP_S) -> str:
    levels = _LLD[feature_set][1]
    if streaming:
        wave = "writer.levelconf.isRb = 1\nwriter.levelconf.growDyn = 0\n"
        wave += f"writer.levelconf.nT = {STREAM_WAVE_SAMPLES}"
    else:
        wave = "writer.levelconf.isRb = 0\nwriter.levelconf.growDyn = 1"
    lines = [
        "[componentInstances:cComponentManager]",
        "instance[dataMemory].type = cDataMemory",
        f"instance[{SOURCE}].type = cExternalAudioSource",
        "instance[lldconcat].type = cVectorConcat",
        f"instance[{SINK}].type = cExternalSink",
        "",
        f"[{SOURCE}:cExternalAudioSource]",
        "writer.dmLevel = wave",
        wave,
        f"sampleRate = {SAMPLE_RATE}",
        "nBits = 16",
        "channels = 1",
        "",
        _lld_components(feature_set, hop_s),
        "",
        "[lldconcat:cVectorConcat]",
        f"reader.dmLevel = {levels}",
        "writer.dmLevel = lld",
        "includeSingleElementFields = 1",
        "",
        f"[{SINK}:cExternalSink]",
        "reader.dmLevel = lld",
        "blocksize = 1",
        "",
    ]
    return "\n".join(lines)


def open_smile(feature_set: FeatureSet | str, streaming: bool, hop_s: float = HOP_S) -> OpenSMILE:
    """An initialised (not yet running) openSMILE instance for the LLDs of `feature_set`, a frame every
    `hop_s` seconds."""
    fs = _feature_set(feature_set)
    hop_s = check_hop(hop_s)
    shared = os.path.join(_CONFIG_ROOT, "shared")
    options = {
        "bufferModeRbConf": os.path.join(shared, "BufferModeRb.conf.inc"),
        "bufferModeRbLagConf": os.path.join(shared, "BufferModeRbLag.conf.inc"),
        # The shipped configs grow these levels without bound (they feed functionals over the whole clip);
        # here nothing reads them but the frame concatenation, which waits for the lagged pitch levels:
        # a ring buffer as deep as the lag buffers keeps memory flat.
        "bufferModeConf": os.path.join(shared, "BufferModeRbLag.conf.inc"),
    }
    # smile_initialize only reads a config file by name. An anonymous in-memory file (Linux memfd) has a
    # name under /proc and nothing on disk, so a kill can leave no edge_emo_*.conf litter in $TMPDIR.
    fd = os.memfd_create(f"edge_emo_{fs.value}.conf")
    try:
        os.write(fd, _config_text(fs, streaming, hop_s).encode())
        smile = OpenSMILE()
        try:
            smile.initialize(f"/proc/self/fd/{fd}", options, loglevel=0)
        except Exception as e:
            smile.free()
            raise OpenSmileError(f"openSMILE could not load the {fs.value} LLD configuration: {e}") from e
    finally:
        os.close(fd)
    return smile


def opensmile_version() -> str:
    """The installed opensmile package's version, read from its metadata: importing the package pulls in
    pandas (and with it pyarrow, which refused to load beside numpy 1.x on the oldest supported install)."""
    from importlib.metadata import version

    return version("opensmile")


@functools.cache
def column_names(feature_set: FeatureSet | str) -> tuple[str, ...]:
    """Names of the values of one frame, in the order openSMILE emits them."""
    smile = open_smile(feature_set, streaming=False)
    try:
        n = smile.external_sink_get_num_elements(SINK)
        return tuple(smile.external_sink_get_element_name(SINK, i) for i in range(n))
    finally:
        smile.free()


def spec_for(feature_set: FeatureSet | str, hop_s: float = HOP_S) -> FeatureSpec:
    """The `FeatureSpec` of an extractable set (egemaps: 25 values, egemaps-lite: 13, compare: 65), a frame
    every `hop_s` seconds (10 or 20 ms), 16 kHz."""
    fs = _feature_set(feature_set)
    return FeatureSpec(
        name=fs.value, columns=column_names(fs), hop_s=check_hop(hop_s), sample_rate=SAMPLE_RATE
    )


def front_ends() -> list[FeatureSpec]:
    """Every front end this openSMILE offers (each extractable set at each hop), eGeMAPS at 10 ms first."""
    return [spec_for(fs, hop) for fs in extractable_sets() for hop in HOPS_S]


def check_extractable(spec: FeatureSpec) -> None:
    """Raise unless this openSMILE build emits exactly the frames `spec` describes (e.g. from a bundle)."""
    if spec.sample_rate is None:
        raise ValueError(f"feature set '{spec.name}' is precomputed and has no audio extractor")
    try:
        ours = spec_for(spec.name, spec.hop_s)
    except ValueError as e:
        raise FeatureMismatchError(f"feature spec '{spec.name}': {e}") from None
    if spec != ours:
        raise FeatureMismatchError(
            f"feature spec '{spec.name}' ({spec.dim} values, hop {spec.hop_s * 1000:g} ms, "
            f"{spec.sample_rate} Hz) "
            f"differs from what this openSMILE extracts ({ours.dim} values, hop {ours.hop_s * 1000:g} ms, "
            f"{ours.sample_rate} Hz{'' if spec.columns[: ours.dim] == ours.columns else ', other columns'})"
        )
