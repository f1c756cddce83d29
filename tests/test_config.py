from pathlib import Path

import pytest

from cuecraft.config import CodecConfig, Config, config_from_dict, load_config
from cuecraft.errors import ParameterError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert isinstance(config, CodecConfig if path.name.startswith("codec") else Config)
    assert config.name == path.stem


def test_codec_stages_keep_the_paper_defaults_for_unset_keys():
    config = config_from_dict({"backbone": "codec", "stage1": {"steps": 5}, "stage2": {"lr": 2e-4}})
    assert (config.stage1.steps, config.stage1.lr, config.stage1.batch_size) == (5, 1e-5, 4)
    assert (config.stage2.lr, config.stage2.batch_size, config.stage2.ema) == (2e-4, 6, 0.999)


@pytest.mark.parametrize("data, message", [
    ({"backbone": "audio"}, "backbone = 'audio'"),
    ({"backbone": "codec", "model": {}}, r"\[model\]: unknown section"),
    ({"backbone": "codec", "conditioning": {"windows": [0, "5"]}}, r"\[conditioning\].windows"),
    ({"backbone": "codec", "stage1": {"ema": "yes"}}, r"\[stage1\].ema = 'yes'"),
])
def test_bad_codec_configs_name_the_key(data, message):
    with pytest.raises(ParameterError, match=message):
        config_from_dict(data)
