"""The ranking check's choice of architectures: spread over the FLOPs range, plus a narrow band at the median."""

import pytest

from detnas_d2.cost import backbone_flops
from detnas_d2.space.backbone import BackboneSearchSpace
from detnas_d2.tools.ranking_check import choose_architectures


def _flops(arch):
    return backbone_flops(arch, space="small")


def test_spread_covers_the_flops_range_and_band_stays_near_the_median():
    spread, band = choose_architectures(BackboneSearchSpace("small"), _flops, spread=8, band=4, seed=0, pool=400)
    spread_flops = [_flops(a) for a in spread]
    assert spread_flops == sorted(spread_flops) and len(set(map(tuple, spread))) == 8
    assert spread_flops[-1] - spread_flops[0] > 0.2 * spread_flops[0]  # the cheapest draw to the dearest (260M-329M)
    median = sorted(spread_flops)[4]
    assert all(abs(_flops(a) - median) < 0.1 * median for a in band)
    assert not {tuple(a) for a in band} & {tuple(a) for a in spread}
    again = choose_architectures(BackboneSearchSpace("small"), _flops, spread=8, band=4, seed=0, pool=400)
    assert again == (spread, band)


def test_too_narrow_a_band_is_an_error():
    with pytest.raises(ValueError, match="within 0% of the median FLOPs"):
        choose_architectures(BackboneSearchSpace("small"), _flops, spread=2, band=5, seed=0, band_width=0.0, pool=50)
