from keys.selectors import allowed_models


def test_nothing_set_means_whole_catalog():
    assert allowed_models(team_models=(), group_models=(), key_models=()) is None


def test_intersection_of_every_level_that_is_set():
    result = allowed_models(team_models=["a", "b", "c"], group_models=["b", "c", "d"], key_models=["c", "b", "x"])
    assert result == {"b", "c"}


def test_forbidden_models_are_removed_even_when_unrestricted():
    result = allowed_models(team_models=(), group_models=(), key_models=(), forbidden=["gpt-4o"])
    assert "gpt-4o" not in result and "anything-else" in result
    assert allowed_models(team_models=["a", "b"], group_models=(), key_models=(), forbidden=["a"]) == {"b"}
