"""Reduced decoding against a trained model (issue 29): the README's bound on top-1 and probabilities.

Not in tests/test_reduced_decode.py, which the torch-free edge install runs: this one trains."""

import dataclasses

import numpy as np
import pytest
from test_reduced_decode import photo

from runtime.preprocess import preprocess_image


@pytest.mark.slow
def test_reduced_decoding_changes_no_top1_of_a_trained_model_on_photographs(demo_run, tmp_path):
    import runtime
    from runtime.predictor import softmax

    with runtime.load(demo_run[0], workers=0) as predictor:
        spec = predictor.metadata.preprocess
        datas = [photo(size, index=i) for size in ((2016, 1512), (4032, 3024), (3024, 4032)) for i in (0, 1)]
        reduced = np.stack([preprocess_image(d, spec) for d in datas])
        exact = np.stack([preprocess_image(d, dataclasses.replace(spec, decode="exact")) for d in datas])
        p, q = softmax(predictor.predict_logits(reduced)), softmax(predictor.predict_logits(exact))
    np.testing.assert_array_equal(p.argmax(1), q.argmax(1))
    assert np.abs(p - q).max() < 0.01  # the README's bound: a probability point
