"""The action set: the users' files, round trips and the mirror map."""


import h5py
import numpy as np
import pytest

from conftest import SHARED_DIR
from simfish.io.actions import Actions, ActionsError, as_actions

SHARED = SHARED_DIR
USERS_H5 = SHARED / "actions_all_bouts_with_null.h5"
USERS_JSON = SHARED / "default_actions.json"


@pytest.fixture(scope="module")
def default():
    return Actions.default()


def test_default_has_the_21_users_actions(default):
    assert default.num_actions == 21
    assert default.names[:3] == ["SCS", "LCS", "BS"]
    assert default.names[-1] == "Null"
    assert default.is_capture.tolist() == [n in ("SCS", "LCS") for n in default.names]
    turns = {n for n, t in zip(default.names, default.is_turn, strict=True) if t}
    assert turns == {
        f"{b}_{s}" for b in ("O-bend", "J-turn", "SLC", "RT", "LLC", "SAT", "HAT") for s in "RL"
    }
    null = default.get_action("Null")
    assert np.all(null["mean"] == 0) and np.all(null["cov"] == 0)


@pytest.mark.skipif(not USERS_H5.exists(), reason="shared/ folder not beside the checkout")
def test_users_hdf5_file_loads_and_equals_default(default):
    loaded = Actions()
    loaded.from_hdf5(USERS_H5)
    assert loaded == default


@pytest.mark.skipif(not USERS_JSON.exists(), reason="shared/ folder not beside the checkout")
def test_users_json_gives_the_same_numbers(default):
    from_json = Actions.from_json(USERS_JSON)
    assert from_json.names == default.names
    np.testing.assert_array_equal(from_json.means, default.means)
    np.testing.assert_array_equal(from_json.cov, default.cov)
    np.testing.assert_array_equal(from_json.is_turn, default.is_turn)
    np.testing.assert_array_equal(from_json.is_capture, default.is_capture)
    np.testing.assert_allclose(from_json.colors, default.colors, atol=5e-5)  # JSON rounds to 1e-4


def test_hdf5_round_trip_preserves_every_value(default, tmp_path):
    path = tmp_path / "a.h5"
    default.to_hdf5(path)
    again = Actions()
    again.from_hdf5(path)
    assert again == default
    with h5py.File(path) as f:
        assert set(f["SCS"].attrs) == {"is_turn", "is_capture", "id", "color"}
        assert set(f["SCS"]) == {"mean", "cov"}
    assert not list(tmp_path.glob("*.tmp"))


def test_json_round_trip(default, tmp_path):
    default.to_json(tmp_path / "a.json")
    assert Actions.from_json(tmp_path / "a.json") == default


def test_mirror_map_swaps_right_and_left(default):
    opposing = default.get_opposing_dict()
    names = default.names
    for i, j in opposing.items():
        assert names[i].rsplit("_", 1)[0] == names[j].rsplit("_", 1)[0]
        assert {names[i][-2:], names[j][-2:]} == {"_R", "_L"}
        assert opposing[j] == i
    mirror = default.mirror
    assert mirror.dtype == np.int32
    np.testing.assert_array_equal(mirror[mirror], np.arange(21))
    for i in range(21):
        if not default.is_turn[i]:
            assert mirror[i] == i
        else:
            # a turn's partner has the opposite mean angle and off-diagonal covariance
            assert default.means[mirror[i], 1] == pytest.approx(-default.means[i, 1])
            assert default.cov[mirror[i], 0, 1] == pytest.approx(-default.cov[i, 0, 1])


def test_cov_factors_reproduce_covariances(default):
    f = default.cov_factors
    np.testing.assert_allclose(f @ np.swapaxes(f, 1, 2), default.cov, atol=1e-12)


def test_list_of_dicts_and_null_action(default):
    actions = as_actions(default.get_all_actions()[:3])
    assert actions.names == ["SCS", "LCS", "BS"]
    actions.add_null_action()
    actions.add_null_action()
    assert actions.names == ["SCS", "LCS", "BS", "Null"]
    assert as_actions(None) == default


def test_bad_actions_give_clear_errors(default, tmp_path):
    bad = default.get_all_actions()
    bad[2]["cov"] = [[1.0, 2.0], [0.0, 1.0]]
    with pytest.raises(ActionsError, match=r"actions\[2\]: 'cov' must be symmetric"):
        Actions(bad)
    with pytest.raises(ActionsError, match="missing field 'mean'"):
        Actions([{"name": "X"}])
    turn = [a for a in default.get_all_actions() if a["name"] == "RT_R"]
    with pytest.raises(ActionsError, match="'RT_R' has no mirror partner"):
        Actions(turn).get_opposing_dict()
    path = tmp_path / "broken.h5"
    with h5py.File(path, "w") as f:
        f.create_group("SCS").create_dataset("mean", data=[1.0, 0.0])
    with pytest.raises(ActionsError, match="group 'SCS': missing dataset 'cov'"):
        Actions().from_hdf5(path)
    with pytest.raises(ActionsError, match="cannot read actions HDF5"):
        Actions().from_hdf5(tmp_path / "absent.h5")
    with pytest.raises(KeyError, match="no action named 'Swim'"):
        default.get_action("Swim")
