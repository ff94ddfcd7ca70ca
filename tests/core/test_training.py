"""Model, pretraining, fine-tuning and checkpoints on small synthetic frame sequences (real code paths)."""

import numpy as np
import pytest
import torch

from edge_emo.data.clips import ClipSet
from edge_emo.emotions import EMOTIONS
from edge_emo.features import FeatureSpec, NormStats
from edge_emo.features.spec import FeatureMismatchError
from edge_emo.model import EmotionGRU, ModelConfig
from edge_emo.train.batches import pad
from edge_emo.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from edge_emo.train.finetune import (
    FinetuneConfig,
    embed,
    finetune_head,
    masked,
    predict,
    readout_loss,
    sample_labeled,
    train_baseline,
)
from edge_emo.train.pretrain import PretrainConfig, mask_span, pretrain

SPEC = FeatureSpec("egemaps", tuple(f"c{i}" for i in range(5)))


def synthetic_clips(n: int, seed: int = 0) -> ClipSet:
    """Smooth random walks whose level depends on the labeled emotion, so there is something to learn."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, 6), np.float32)
    feats = []
    for i in range(n):
        k = i % 6
        labels[i, k] = 2.0 + (i % 2)
        t = int(rng.integers(40, 120))
        walk = np.cumsum(rng.normal(0, 0.2, (t, SPEC.dim)), 0) + k
        feats.append((walk * np.linspace(1, 2, SPEC.dim)).astype(np.float32))
    return ClipSet(SPEC, feats, [f"s{i % 4}" for i in range(n)], [f"c{i}" for i in range(n)], labels)


@pytest.fixture(scope="module")
def clips():
    return synthetic_clips(48)


@pytest.fixture(scope="module")
def pretrained(clips):
    return pretrain([clips], PretrainConfig(epochs=3, batch_size=8), hidden=32)


def test_padding_never_leaks_into_the_utterance_prediction():
    torch.manual_seed(0)
    model = EmotionGRU(ModelConfig(5, hidden=16))
    short, long = np.random.rand(7, 5).astype(np.float32), np.random.rand(30, 5).astype(np.float32)
    x, lengths = pad([short, long])
    alone = model(torch.from_numpy(short)[None], torch.tensor([7]))
    assert torch.allclose(model(x, lengths)[0], alone[0], atol=1e-6)


def test_mask_span_is_valid_for_any_length():
    rng = np.random.default_rng(0)
    for length in [1, 3, 29, 30, 31, 119, 120, 500]:
        s = mask_span(length, 30, rng)
        assert 0 <= s.start < s.stop <= length
        assert s.stop - s.start == min(30, max(1, length // 4))


def test_pretraining_learns_to_reconstruct(pretrained):
    history = pretrained.provenance["pretrain"]["loss_history"]
    assert len(history) == 3 and history[-1] < history[0]
    assert pretrained.provenance["stage"] == "pretrained"


@pytest.mark.parametrize("loss_on", ["masked", "all"])
def test_both_losses_run(clips, loss_on):
    ck = pretrain([clips.subset(range(8))], PretrainConfig(epochs=1, batch_size=4, loss_on=loss_on), hidden=8)
    assert np.isfinite(ck.provenance["pretrain"]["loss_history"][0])


def test_a_training_state_continues_the_run_exactly(tmp_path, clips):
    data, state = [clips.subset(range(16))], tmp_path / "pre.state.safetensors"
    pretrain(data, PretrainConfig(epochs=2, batch_size=6), hidden=8, state_file=state)
    resumed = pretrain(data, PretrainConfig(epochs=3, batch_size=6), hidden=8, resume=state)
    straight = pretrain(data, PretrainConfig(epochs=3, batch_size=6), hidden=8)
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, atol=1e-6, rtol=0)
    history = resumed.provenance["pretrain"]["loss_history"]
    assert history == straight.provenance["pretrain"]["loss_history"] and len(history) == 3
    with pytest.raises(CheckpointError, match=r"of another run \(differs in batch_size, hidden\)"):
        pretrain(data, PretrainConfig(epochs=3, batch_size=4), hidden=16, resume=state)
    save_checkpoint(straight, tmp_path / "pre.safetensors")
    with pytest.raises(CheckpointError, match="not an edge-emo training state"):
        pretrain(data, PretrainConfig(epochs=3, batch_size=6), hidden=8, resume=tmp_path / "pre.safetensors")


def test_head_finetuning_freezes_the_backbone(clips, pretrained):
    chosen = sample_labeled(clips, 24, seed=1)
    ft = finetune_head(pretrained, chosen, FinetuneConfig(epochs=30, batch_size=8))
    for name, p in pretrained.model.gru.state_dict().items():
        assert torch.equal(p, ft.model.gru.state_dict()[name])
    assert not torch.equal(pretrained.model.head.weight, ft.model.head.weight)
    mse_before = np.mean((predict(pretrained, chosen.features) - chosen.labels) ** 2)
    mse_after = np.mean((predict(ft, chosen.features) - chosen.labels) ** 2)
    assert mse_after < mse_before
    assert (
        ft.provenance["finetune"]["labeled_clips"] == 24
        and ft.provenance["pretrained_from"]["stage"] == "pretrained"
    )


def test_label_draws_are_seeded_and_bounded(clips):
    assert sample_labeled(clips, 10, 5).names == sample_labeled(clips, 10, 5).names
    assert sample_labeled(clips, 10, 5).names != sample_labeled(clips, 10, 6).names
    with pytest.raises(ValueError, match="asked for 49 labeled clips"):
        sample_labeled(clips, 49, 0)


def test_baseline_trains_every_weight(clips):
    base = train_baseline(clips, FinetuneConfig(epochs=2, batch_size=8), hidden=16)
    assert base.provenance["stage"] == "baseline"
    assert predict(base, clips.features).shape == (48, 6)


def test_checkpoint_round_trip_keeps_predictions_and_metadata(tmp_path, clips, pretrained):
    path = tmp_path / "m.safetensors"
    save_checkpoint(pretrained, path)
    back = load_checkpoint(path)
    assert back.spec == SPEC and back.emotions == EMOTIONS
    np.testing.assert_array_equal(back.norm.mean, pretrained.norm.mean)
    np.testing.assert_allclose(predict(back, clips.features), predict(pretrained, clips.features), atol=1e-6)
    assert back.provenance["pretrain"]["loss_history"] == pretrained.provenance["pretrain"]["loss_history"]


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="none.safetensors does not exist"):
        load_checkpoint(tmp_path / "none.safetensors")
    bundle = tmp_path / "ft.bundle"  # a bundle where a checkpoint belongs (`export ft.bundle`, `--init`)
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"ft.bundle is a model bundle \(made by `edge-emo export`\)"):
        load_checkpoint(bundle)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_checkpoint(junk)


def test_checkpoint_from_another_feature_set_is_refused(clips, pretrained):
    other = ClipSet(
        FeatureSpec("compare", tuple(f"x{i}" for i in range(5))),
        clips.features,
        clips.speakers,
        clips.names,
        clips.labels,
    )
    with pytest.raises(FeatureMismatchError, match="trained on feature set 'egemaps'"):
        finetune_head(pretrained, other, FinetuneConfig(epochs=1))


def test_embeddings_are_mean_of_hidden_states(pretrained, clips):
    x = pretrained.norm.apply(clips.features[0])
    with torch.inference_mode():
        h = pretrained.model.hidden_states(torch.from_numpy(x)[None])[0][0]
    np.testing.assert_allclose(
        embed(pretrained.model, pretrained.norm, clips.features[:1])[0], h.mean(0).numpy(), atol=1e-5
    )


def test_normstats_clean_nan_and_inf():
    x = np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 5.0], [np.inf, 5.0]], np.float32)
    norm = NormStats.fit([x])
    np.testing.assert_allclose(norm.mean, [2.0, 5.0])
    z = norm.apply(x)
    assert np.all(np.isfinite(z)) and z[2, 0] == 0 and z[3, 0] == 0 and np.all(z[:, 1] == 0)


def test_cue_margin_lowers_every_output_by_that_much_and_crops_bound_the_clips(clips):
    config = FinetuneConfig(epochs=2, seed=3, crop_s=0.3)
    plain = train_baseline(clips, config, hidden=8)
    shifted = train_baseline(clips, FinetuneConfig(epochs=2, seed=3, crop_s=0.3, cue_margin=0.25), hidden=8)
    np.testing.assert_allclose(
        predict(plain, clips.features) - predict(shifted, clips.features), 0.25, atol=1e-5
    )
    assert shifted.provenance["finetune"]["cue_margin"] == 0.25
    # a crop changes what each epoch sees, so it changes the weights
    whole = train_baseline(clips, FinetuneConfig(epochs=2, seed=3), hidden=8)
    assert not torch.equal(whole.model.head.weight, plain.model.head.weight)


def test_speaker_adaptation_trains_on_each_speakers_estimate_and_cold_start_mixes_in_the_prior(clips):
    from edge_emo.features.normalization import SpeakerAdaptation, speaker_adapted

    adapting = SpeakerAdaptation(prior_s=0.2)
    plain = train_baseline(clips, FinetuneConfig(epochs=1, seed=1), hidden=8)
    ignored = train_baseline(clips, FinetuneConfig(epochs=1, seed=1, cold_start=0.5), hidden=8)
    assert torch.equal(plain.model.head.weight, ignored.model.head.weight)  # no adaptation: nothing to mix
    a = train_baseline(clips, FinetuneConfig(epochs=1, seed=1, speaker_adaptation=adapting), hidden=8)
    b = train_baseline(
        clips, FinetuneConfig(epochs=1, seed=1, speaker_adaptation=adapting, cold_start=0.5), hidden=8
    )
    assert not torch.equal(a.model.head.weight, plain.model.head.weight)
    assert not torch.equal(a.model.head.weight, b.model.head.weight)
    assert plain.adaptation is None and a.adaptation == adapting
    # with speakers, a clip is standardised by its speaker's estimate; without, by the prior alone
    own = speaker_adapted(clips.features, clips.speakers, a.norm, adapting, SPEC.hop_s)
    np.testing.assert_allclose(predict(a, clips.features, clips.speakers), predict(a, own), atol=1e-6)
    assert not np.allclose(predict(a, clips.features, clips.speakers), predict(a, clips.features))


def test_masking_zeroes_whole_columns_and_one_span_and_leaves_the_clip_alone_otherwise():
    rng = np.random.default_rng(0)
    frames = np.ones((50, 5), np.float32)
    assert masked(frames, 0, 0, rng) is frames  # nothing to mask: no copy, no draw
    out = masked(frames, 2, 10, rng)
    assert frames.min() == 1.0  # the clip itself is never changed
    dead = (out == 0).all(0)
    assert dead.sum() == 2
    rows = (out[:, ~dead] == 0).all(1)  # the span: whole rows, contiguous, at most 10 frames
    assert rows.sum() <= 10 and (rows.sum() == 0 or np.ptp(np.flatnonzero(rows)) == rows.sum() - 1)
    assert masked(np.ones((1, 5), np.float32), 9, 10, rng).sum() == 0  # more columns than the clip has


def test_regularised_training_is_seeded_and_differs_from_plain(clips):
    regular = FinetuneConfig(epochs=2, seed=3, dropout=0.3, mask_features=2, mask_span_s=0.1, lr_decay=True)
    a = train_baseline(clips, regular, hidden=8)
    b = train_baseline(clips, regular, hidden=8)
    plain = train_baseline(clips, FinetuneConfig(epochs=2, seed=3), hidden=8)
    assert torch.equal(a.model.head.weight, b.model.head.weight)
    assert not torch.equal(a.model.head.weight, plain.model.head.weight)
    # dropout acts in training only: predictions are deterministic
    np.testing.assert_array_equal(predict(a, clips.features), predict(a, clips.features))
    assert a.provenance["finetune"]["dropout"] == 0.3 and a.provenance["finetune"]["lr_decay"] is True


def test_readout_loss_rewards_the_right_category_above_the_threshold():
    anger = torch.tensor([[0.0, 0.0, 3.0, 0.0, 0.0, 0.0]])
    calm = torch.zeros(1, 6)
    right, wrong = anger.clone(), anger.roll(1, 1)  # anger read as anger; as surprise
    assert readout_loss(right, anger) < readout_loss(wrong, anger)
    # neutral truth: outputs below the threshold are right, one above it is a false cue
    assert readout_loss(calm, calm) < readout_loss(anger, calm)
    # an emotion just under the threshold still loses to neutral: the loss pushes it over
    assert readout_loss(torch.full((1, 6), 0.4), anger) > readout_loss(
        torch.full((1, 6), 0.4) + anger / 3, anger
    )
    plain = train_baseline(synthetic_clips(24), FinetuneConfig(epochs=1, seed=2), hidden=8)
    weighted = train_baseline(
        synthetic_clips(24), FinetuneConfig(epochs=1, seed=2, readout_weight=0.5), hidden=8
    )
    assert not torch.equal(plain.model.head.weight, weighted.model.head.weight)
