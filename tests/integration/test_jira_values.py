"""Jira value shapes the simulator does not serve: rich text nodes, odd custom field values,
development summaries."""

from __future__ import annotations

from structlog.testing import capture_logs

from etld.sources.jira import values as v

DEV_SUMMARY = (
    "{pullrequest={dataType=pullrequest, state=MERGED, stateCount=2}, "
    'json={"cachedValue":{"errors":[],"summary":{"pullrequest":{"overall":{"count":2,'
    '"state":"MERGED","dataType":"pullrequest","open":false}}}},"isStale":false}}'
)


def test_rich_text_becomes_one_line_per_block() -> None:
    doc = {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "heading",
                "attrs": {"level": 2},
                "content": [{"type": "text", "text": "Steps"}],
            },
            {
                "type": "orderedList",
                "content": [
                    {
                        "type": "listItem",
                        "content": [
                            {
                                "type": "paragraph",
                                "content": [
                                    {"type": "text", "text": "Ask "},
                                    {"type": "mention", "attrs": {"id": "x", "text": "@Ada"}},
                                    {"type": "hardBreak"},
                                    {"type": "emoji", "attrs": {"shortName": ":ok:"}},
                                ],
                            }
                        ],
                    }
                ],
            },
            {"type": "codeBlock", "content": [{"type": "text", "text": "make test"}]},
            {"type": "mediaSingle", "content": [{"type": "media", "attrs": {"id": "m"}}]},
            {
                "type": "paragraph",
                "content": [{"type": "inlineCard", "attrs": {"url": "https://x.y"}}],
            },
        ],
    }
    assert v.adf_to_text(doc) == "Steps\nAsk @Ada\n:ok:\nmake test\nhttps://x.y"
    assert v.adf_to_text("plain") == "plain"
    assert v.adf_to_text({"type": "doc", "content": []}) is None
    assert v.adf_to_text(None) is None


def test_custom_field_values_are_normalised_by_shape() -> None:
    user = {"accountId": "557058:abc", "displayName": "Ada Novak"}
    assert v.normalise("customfield_1", {"value": "High", "id": "1"}) == "High"
    assert v.normalise("customfield_1", [{"value": "iOS"}, {"value": "Web"}]) == ["iOS", "Web"]
    assert (
        v.normalise("customfield_1", {"value": "EMEA", "child": {"value": "Kenya"}})
        == "EMEA / Kenya"
    )
    assert v.normalise("customfield_1", user) == "Ada Novak"
    assert v.account_ids([user, user]) == ["557058:abc", "557058:abc"]
    assert v.normalise(
        "customfield_1", [{"id": 7, "name": "S 12", "state": "closed", "boardId": 1}]
    ) == ["S 12"]
    assert (
        v.normalise("customfield_1", "2024-01-15T10:00:00.000+0800") == "2024-01-15T02:00:00+00:00"
    )
    assert v.normalise("customfield_1", "2024-01-15", {"type": "date"}) == "2024-01-15"
    assert v.normalise("customfield_1", 8.0) == 8.0
    assert v.normalise("customfield_1", []) is None
    assert v.normalise("customfield_1", "") is None
    assert v.normalise("customfield_1", DEV_SUMMARY) == 2
    assert v.as_text(["a", 2.0, True]) == "a, 2, true"
    assert v.as_number("3.5") == 3.5
    assert v.as_flag("Yes") is True
    assert v.as_flag("no") is False


def test_an_unexpected_shape_is_kept_as_json_and_logged_once() -> None:
    with capture_logs() as logs:
        first = v.normalise("customfield_99999", {"weird": [1, 2]})
        again = v.normalise("customfield_99999", {"weird": [3]})
    assert first == '{"weird":[1,2]}'
    assert again == '{"weird":[3]}'
    assert [e["field"] for e in logs if e["event"].startswith("unexpected")] == [
        "customfield_99999"
    ]


def test_development_summaries_tell_how_many_pull_requests() -> None:
    assert v.dev_pr_count({"customfield_10000": DEV_SUMMARY, "summary": "x"}) == 2
    assert v.dev_pr_count({"customfield_10000": "{pullrequest={}, json={}}"}) == 0
    assert v.dev_pr_count({"customfield_10000": "free text"}) is None
    assert v.dev_pr_count({}) is None
