"""Config specs and dotted fields: the one place that loads ``path/to/config.py[:preset,...]``.

The stage scripts read their config through absl's ``config_flags`` (``--config``); the driver, the
benchmark and the toy world's tools load the same file through :func:`load_config`, as
``config_flags`` does: the file's ``get_config(preset)``. No ``sys.path`` edit is needed: the package
is installed (``pip install -e .``) and the config file imports it like any other module.
"""

import importlib.util
import os

from b2diffurl.errors import first_line

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout the package runs from
DEFAULT_CONFIG = "config/stage_process.py"  # relative to the caller's folder or REPO_ROOT
DEFAULT_CONFIG_PATH = os.path.join(REPO_ROOT, DEFAULT_CONFIG)


def repo_path(*parts):
    """A file or folder of the checkout: ``repo_path("prompts", "toy1_train.json")``."""
    return os.path.join(REPO_ROOT, *parts)


def load_config(spec):
    """``path/to/config.py[:preset]`` -> ConfigDict, as absl's config_flags reads it."""
    path, _, preset = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_b2diffurl_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(preset) if preset else module.get_config()


def config_spec_problem(spec):
    """What is wrong with a ``path.py[:preset,...]`` config spec (one line), or None."""
    path, _, _ = spec.partition(":")
    if not os.path.isfile(path):
        return f"{path!r} does not exist: use config/stage_process.py[:preset]"
    if not path.endswith(".py"):
        return f"{path!r} is not a Python config file (a .py with get_config())"
    try:
        load_config(spec)
    except Exception as err:  # noqa: BLE001 - a user's config file can raise anything
        return f"does not load: {type(err).__name__}: {first_line(err)}"
    return None


def get(config, field):
    """``config`` value at a dotted field name (``train.learning_rate``)."""
    value = config
    for part in field.split("."):
        value = value[part]
    return value


def set_field(config, field, value):
    """Set the dotted ``field`` of ``config`` (an int given for a float field becomes a float)."""
    *parents, name = field.split(".")
    node = config
    for part in parents:
        node = node[part]
    if isinstance(node[name], float) and isinstance(value, int):
        value = float(value)
    node[name] = value


def flatten(tree, prefix=""):
    """{"train": {"learning_rate": 1e-3}} -> {"train.learning_rate": 1e-3}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
