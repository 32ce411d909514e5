import pytest

from engine.core.adducts import check_adduct, default_adduct, formula_mass, parse_adduct
from engine.core.errors import InvalidRecordError

PROTON = 1.007276


@pytest.mark.parametrize(("text", "n", "delta", "charge"), [
    ("[M+H]+", 1, PROTON, 1),
    ("[M-H]-", 1, -PROTON, -1),
    ("[M+Na]+", 1, 22.989221, 1),
    ("[M+NH4]+", 1, 18.033826, 1),
    ("[M+2H]2+", 1, 2 * PROTON, 2),
    ("[M-H2O+H]+", 1, PROTON - 18.010565, 1),
    ("[2M+H]+", 2, PROTON, 1),
    ("[M+HCOO]-", 1, 44.998201, -1),
    ("[M+FA-H]-", 1, 44.998201, -1),
    ("M+H", 1, PROTON, 1),
])
def test_parse_common_adducts(text: str, n: int, delta: float, charge: int) -> None:
    a = parse_adduct(text)
    assert a.n_molecules == n
    assert a.charge == charge
    assert a.delta_mass == pytest.approx(delta, abs=2e-5)


def test_mz_round_trip_for_caffeine() -> None:
    neutral = 194.080376  # caffeine C8H10N4O2
    assert formula_mass("C8H10N4O2") == pytest.approx(neutral, abs=1e-5)
    a = parse_adduct("[M+H]+")
    assert a.mz_from_neutral(neutral) == pytest.approx(195.087652, abs=1e-5)
    assert a.neutral_from_mz(a.mz_from_neutral(neutral)) == pytest.approx(neutral)
    assert default_adduct("negative").charge == -1


@pytest.mark.parametrize("text", ["[M+Xx]+", "foo", "[M+H", "", "[M+H]+++x"])
def test_unknown_adduct_is_a_typed_error(text: str) -> None:
    with pytest.raises(ValueError, match="adduct"):
        parse_adduct(text)
    with pytest.raises(InvalidRecordError) as info:
        check_adduct(text, path="lib.mgf", record="7")
    assert info.value.reason == "unknown_adduct"
    assert "lib.mgf" in str(info.value) and "record 7" in str(info.value)
