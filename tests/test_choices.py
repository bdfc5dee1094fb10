"""The choice lists: one torch-free home that the checks read and the implementations' registries are built from."""

import subprocess
import sys

import pytest
from conftest import REPO

from b2diffurl import choices


def test_a_registry_takes_the_order_of_its_choice_list():
    built = choices.registry({"math": 2, "sdpa": 1}, "ATTENTIONS", "a registry")
    assert list(built) == list(choices.ATTENTIONS) and built == {"sdpa": 1, "math": 2}


@pytest.mark.parametrize(
    "implementations, named",
    [({"sdpa": 1}, "['sdpa']"), ({"sdpa": 1, "math": 2, "flash": 3}, "['flash', 'math', 'sdpa']")],
    ids=["one missing", "one extra"],
)
def test_a_registry_that_differs_from_its_choice_list_stops_the_import(implementations, named):
    with pytest.raises(ImportError) as err:
        choices.registry(implementations, "ATTENTIONS", "b2diffurl.models.ATTENTION_PROCESSORS")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"b2diffurl.models.ATTENTION_PROCESSORS implements {named}, ")
    assert "b2diffurl.choices.ATTENTIONS lists ['math', 'sdpa']" in message


def test_every_attention_processor_exists_in_diffusers():
    from diffusers.models import attention_processor

    from b2diffurl.models import ATTENTION_PROCESSORS

    assert all(callable(getattr(attention_processor, name)) for name in ATTENTION_PROCESSORS.values())


def test_tracker_names_and_eval_metrics_split_a_field():
    assert choices.tracker_names(" tensorboard , wandb,") == ["tensorboard", "wandb"]
    assert choices.tracker_names("") == []

    class Config:
        evaluate = {"metrics": "bertscore, clipscore,bertscore"}

    assert choices.eval_metrics(Config) == ["bertscore", "clipscore"]


def test_the_choices_and_the_checks_import_no_torch():
    code = (
        "import sys; import b2diffurl.choices, b2diffurl.prompt_sets, b2diffurl.checks; "
        "print(sorted(m for m in ('torch', 'numpy', 'diffusers', 'open_clip') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
