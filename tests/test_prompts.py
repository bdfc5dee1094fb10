import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Appendix H: train lists of 45 / 40 / 40 prompts; test lists as printed (90 / 40 / 30).
COUNTS = {1: (45, 90), 2: (40, 40), 3: (40, 30)}


@pytest.mark.parametrize("template", [1, 2, 3])
def test_prompt_lists_match_appendix_h(template):
    def load(split):
        with open(os.path.join(REPO, "prompts", f"template{template}_{split}.json")) as f:
            return json.load(f)

    train, test = load("train"), load("test")
    assert (len(train), len(test)) == COUNTS[template]
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert not set(train) & set(test), "train and test prompts must be disjoint"
    assert all(isinstance(p, str) and p == p.strip() and p for p in train + test)


def test_template_contents_spot_checks():
    with open(os.path.join(REPO, "prompts", "template1_train.json")) as f:
        t1 = json.load(f)
    assert t1[0] == "a cat washing dishes" and t1[-1] == "a kangaroo playing chess"
    assert sum(p.endswith("riding a bike") for p in t1) == 15
    with open(os.path.join(REPO, "prompts", "template3_test.json")) as f:
        assert json.load(f)[-1] == "road on the left of tree"
