"""Look-alike families: each look-alike differs from its root in exactly k parts, families stay apart."""

from __future__ import annotations

import numpy as np
import pytest

from scout_exp.data.faceparts import FACE_PARTS, SALIENT_PARTS, SKIN_TONES, FaceParts, identity_codes
from scout_exp.errors import UserError
from scout_exp.explain.pairs import split_pairs


@pytest.mark.parametrize("ks", [(1, 2, 3), (1,), (2, 2), (1, 1, 1, 1, 1)])
def test_lookalike_codes(ks: tuple[int, ...]) -> None:
    size = 1 + len(ks)
    codes = identity_codes(8 * size, seed=3, lookalikes=ks)
    dist = (codes[:, None, :] != codes[None, :, :]).sum(-1)
    family = np.arange(len(codes)) // size
    same = family[:, None] == family[None, :]
    np.fill_diagonal(dist, 99)
    assert dist[~same].min() >= 3  # different families stay >= 3 parts apart
    for f in range(8):
        root = f * size
        for j, k in enumerate(ks):
            assert dist[root, root + 1 + j] == k  # exactly k parts, all others agree
        changed = [set(np.flatnonzero(codes[root] != codes[root + 1 + j])) for j in range(len(ks))]
        assert sum(len(c) for c in changed) == len(set().union(*changed))  # disjoint parts per look-alike
        for c in changed[: len(SALIENT_PARTS)]:  # each look-alike changes a part that covers many pixels
            assert any(FACE_PARTS[j] in SALIENT_PARTS for j in c)
    tones = len(SKIN_TONES)
    face, ears = FACE_PARTS.index("face"), FACE_PARTS.index("ears")
    np.testing.assert_array_equal(codes[:, face] % tones, codes[:, ears] % tones)  # one skin tone
    np.testing.assert_array_equal(identity_codes(5, seed=3, lookalikes=ks), codes[:5])  # prefix


def test_bad_lookalikes() -> None:
    with pytest.raises(UserError, match="data.lookalikes"):
        identity_codes(4, seed=0, lookalikes=(6, 6))
    with pytest.raises(UserError, match="data.lookalikes"):
        identity_codes(4, seed=0, lookalikes=(0,))


def test_pairs_are_lookalikes_with_their_parts_as_ground_truth() -> None:
    fp = FaceParts(num_identities=8, images_per_identity=6, difficulty=0.0)
    assert fp.lookalikes(0) == [1, 2, 3] and fp.lookalikes(2) == [0] and fp.lookalikes(5) == [4]
    pairs = split_pairs(fp, list(range(len(fp))), None)
    ks = [p.meta["k"] for p in pairs]
    assert set(ks) == {1, 2, 3}
    for p in pairs:
        a, b = p.class_1, p.class_2
        assert b in fp.lookalikes(a) and len(fp.differing_parts(a, b)) == p.meta["k"]
        swapped = fp.render(int(p.image_1), swap={q: b for q in p.meta["discriminative_parts"]})
        assert swapped.identity == a
    # a root's pairs visit every look-alike in turn
    assert sorted(p.class_2 for p in pairs if p.class_1 == 0) == [1, 1, 2, 2, 3, 3]
