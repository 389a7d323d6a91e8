"""The gateway's model catalogue: kinds, aliases, 404s, moe_svc's list kept and asked again."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from common.errors import NotFound, UpstreamUnavailable
from common.http_client import ServiceClient
from common.models import ModelEngine, ModelRegistry
from common.retry import RetryPolicy
from gateway.catalogue import ModelCatalogue
from gateway.schemas import ModelKind
from gateway.settings import DEFAULT_MODEL_ALIASES, GatewaySettings


class FakeMoe:
    """moe_svc's `GET /v1/models`, counting the calls; `names` can change between them."""

    def __init__(self, *names: str) -> None:
        self.names = list(names)
        self.calls = 0
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        cards = [{"id": n, "object": "model", "created": 1, "owned_by": "x"} for n in self.names]
        return httpx.Response(200, json={"object": "list", "data": cards})


def _catalogue(
    moe: FakeMoe, aliases: dict[str, str] | None = None, models: ModelRegistry | None = None
) -> ModelCatalogue:
    client = ServiceClient(
        "moe_svc",
        "http://moe",
        transport=httpx.MockTransport(moe),
        retry=RetryPolicy(max_retries=0),
    )
    aliases = DEFAULT_MODEL_ALIASES if aliases is None else aliases
    return ModelCatalogue(client, aliases, cache_s=60.0, timeout_s=1.0, models=models)


def _registry(default_model: str = "") -> ModelRegistry:
    engine = ModelEngine(name="vllm", base_url="http://127.0.0.1:8100/v1", models=("mixtral",))
    return ModelRegistry(ServiceClient("moe_svc", "http://moe"), (engine,), default_model)


async def test_an_engines_models_are_listed_marked_and_resolve_without_moe_svc() -> None:
    moe = FakeMoe("smol-moe", "mixtral")  # an id both serve is the engine's
    catalogue = _catalogue(moe, models=_registry())
    cards = await catalogue.list()
    assert [c.id for c in cards if c.kind == "chat"] == ["auto", "smol-moe", "mixtral"]
    engine_card = next(c for c in cards if c.id == "mixtral")
    assert engine_card.owned_by == "vllm"
    assert engine_card.metadata["platform_extensions"] is False
    moe.down = True
    assert (await catalogue.resolve("mixtral", "chat")).id == "mixtral"
    # Without DEFAULT_MODEL the default chat model is still moe_svc's first.
    moe.down = False
    assert (await catalogue.resolve("gpt-4o-mini", "chat")).id == "smol-moe"


async def test_default_model_names_the_default_chat_model() -> None:
    moe = FakeMoe("smol-moe")
    catalogue = _catalogue(moe, models=_registry(default_model="mixtral"))
    moe.down = True  # the engine's default needs no answer from moe_svc
    assert (await catalogue.resolve("gpt-4o-mini", "chat")).id == "mixtral"


async def test_every_model_is_listed_with_its_kind_and_aliases() -> None:
    cards = await _catalogue(FakeMoe("smol-moe")).list()
    assert [(c.id, c.kind) for c in cards] == [
        ("auto", "chat"),
        ("smol-moe", "chat"),
        ("all-MiniLM-L6-v2", "embedding"),
        ("diffusion", "image"),
        ("gan", "image"),
    ]
    aliases = {c.id: c.aliases for c in cards}
    assert aliases["smol-moe"] == ["gpt-4o-mini", "gpt-3.5-turbo"]
    assert "text-embedding-3-small" in aliases["all-MiniLM-L6-v2"]
    assert aliases["diffusion"] == ["dall-e-2", "dall-e-3"]
    assert aliases["gan"] == [] and aliases["auto"] == []


async def test_aliases_resolve_to_the_served_model_of_their_kind() -> None:
    catalogue = _catalogue(FakeMoe("smol-moe"), {**DEFAULT_MODEL_ALIASES, "sketch": "gan"})
    assert (await catalogue.resolve("gpt-4o-mini", "chat")).id == "smol-moe"
    assert (await catalogue.resolve("text-embedding-ada-002", "embedding")).id == "all-MiniLM-L6-v2"
    assert (await catalogue.resolve("dall-e-3", "image")).id == "diffusion"
    assert (await catalogue.resolve("sketch", "image")).id == "gan"
    assert (await catalogue.resolve("auto", "chat")).id == "auto"
    named = await catalogue.named({"model": "gpt-3.5-turbo", "messages": []}, "chat")
    assert named == {"model": "smol-moe", "messages": []}
    assert await catalogue.named({"input": "x"}, "embedding") == {"input": "x"}


@pytest.mark.parametrize(
    ("model", "kind", "says"),
    [
        ("gpt-5", "chat", "'gpt-5' does not exist as a chat model"),
        ("dall-e-2", "chat", "it is a image model"),
        ("smol-moe", "embedding", "it is a chat model"),
        ("gpt-4o-mini", "image", "it is a chat model"),
    ],
)
async def test_unknown_or_wrong_kind_is_model_not_found(
    model: str, kind: ModelKind, says: str
) -> None:
    with pytest.raises(NotFound) as caught:
        await _catalogue(FakeMoe("smol-moe")).resolve(model, kind)
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert says in caught.value.message


async def test_moe_list_is_kept_and_an_unknown_id_asks_again() -> None:
    moe = FakeMoe("old-name")
    catalogue = _catalogue(moe)
    await catalogue.resolve("old-name", "chat")
    await catalogue.resolve("gpt-4o-mini", "chat")
    assert moe.calls == 1  # kept
    moe.names = ["new-name"]  # moe_svc restarted with another model
    with pytest.raises(NotFound):
        await catalogue.resolve("gpt-5", "chat")  # asked again too soon after the first fetch
    catalogue._fetched_at -= 2.0  # a second later
    assert (await catalogue.resolve("new-name", "chat")).id == "new-name"
    assert moe.calls == 2


async def test_moe_down_is_a_503_for_chat_models_and_leaves_the_rest_listed() -> None:
    moe = FakeMoe("smol-moe")
    moe.down = True
    catalogue = _catalogue(moe)
    with pytest.raises(UpstreamUnavailable):
        await catalogue.resolve("smol-moe", "chat")
    assert (await catalogue.resolve("auto", "chat")).id == "auto"
    assert (await catalogue.resolve("dall-e-2", "image")).id == "diffusion"
    assert [c.id for c in await catalogue.list()] == [
        "auto",
        "all-MiniLM-L6-v2",
        "diffusion",
        "gan",
    ]


@pytest.mark.parametrize(
    ("aliases", "says"),
    [
        ({"auto": "gan"}, "not allowed"),
        ({"x": "default:audio"}, "names no kind"),
        ({"a": "b", "b": "gan"}, "names another alias"),
    ],
)
def test_bad_alias_tables_are_refused(aliases: dict[str, str], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        GatewaySettings(model_aliases=aliases)
