"""Reason sentences: remembered sentences must be the ones the template would write."""

from __future__ import annotations

import math

import pytest

from models import reasons
from models.reasons import READS_CONTEXT, known_features, sentence

CONTEXTS = (
    {},
    {"hs_code": "30049099", "destination_country": "NG", "consignee_country": "BJ", "substance": "tramadol"},
    {
        "hs_code": "29394100",
        "destination_country": "MX",
        "transshipment_country": "AE",
        "substance": "ephedrine",
    },
)
VALUES = (0.0, 1.0, 3.0, 0.25, -2.5, 12.0, 40.0, math.nan)


@pytest.mark.parametrize("feature", sorted(known_features() - READS_CONTEXT))
def test_context_free_templates_ignore_the_declaration(feature: str) -> None:
    # If a template starts quoting the declaration, it must be listed in READS_CONTEXT,
    # or remembered sentences would quote the first declaration seen.
    template = reasons._TEMPLATES[feature]
    for value in VALUES:
        written = {template(value, context) for context in CONTEXTS}
        assert len(written) == 1, f"{feature} sentence depends on the context: {written}"


@pytest.mark.parametrize("feature", sorted(READS_CONTEXT))
def test_context_templates_quote_the_declaration(feature: str) -> None:
    template = reasons._TEMPLATES[feature]
    differs = [template(v, CONTEXTS[1]) != template(v, CONTEXTS[2]) for v in (0.0, 1.0, 0.3)]
    assert any(differs), f"{feature} is listed as reading the context but never does"


def test_remembered_sentences_equal_fresh_ones() -> None:
    reasons._memo.clear()
    for feature in sorted(known_features()):
        for value in VALUES:
            for context in CONTEXTS:
                expected = reasons._TEMPLATES[feature](float(value), context)
                assert sentence(feature, value, context) == expected
                assert sentence(feature, value, context) == expected  # second call: from memory
