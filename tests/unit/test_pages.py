import re

from graphs.api.pages import _histogram


def test_the_histogram_is_an_inline_svg_with_a_bar_per_bin_and_the_counts_on_them():
    assert _histogram([]) == ""
    svg = _histogram([0.8, 0.9, 1.1, 1.2, 1.25, 1.9, 2.5], bins=4)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert len(re.findall(r'<g id="bar-\d+"', svg)) == 4
    assert _histogram([1.0, 1.0]) == _histogram([1.0, 1.0]), "the same figure draws the same"
