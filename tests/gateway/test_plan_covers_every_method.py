"""Plans cover every upstream method (issue 28, item 6): prompts, resources, resource templates and completions are
listed and served only as the plan allows (`prompt_not_in_plan`, `resource_not_in_plan`, JSON-RPC -32003), refused at
a reached monthly cap, rate limited, and not usage; a client's `_developer_id` in `prompts/get` arguments or a
completion's context never reaches the upstream.

All on the session's shared bridge (`gateway_bridge`: old_hotcross over stdio, whose prompt `greet` declares the
identity arguments and says what it got, with completions, the resource `notes://today` and the template
`notes://{day}`); each test brings its own developers."""

from __future__ import annotations

import anyio
import pytest
from mcp_types import PromptReference, ResourceTemplateReference

from accounts import rate_buckets
from accounts.models import UsageEvent
from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory, UsageEventFactory
from tests.support.mcp import http_client, mcp_error, stdio_session, usage_written
from tests.support.upstreams import OLD_HOTCROSS, gateway_env

pytestmark = pytest.mark.django_db(transaction=True)

GREET = PromptReference(type="ref/prompt", name="greet")
NOTES_OF_A_DAY = ResourceTemplateReference(type="ref/resource", uri="notes://{day}")


def developer_on(**plan: object):
    plan.setdefault("code", "narrow")
    plan.setdefault("name", "Narrow")
    return DeveloperFactory(organization=OrganizationFactory(plan=PlanFactory(**plan), max_seats=1))


def whoami_only(**limits: object):
    """A developer whose plan allows the tool `whoami` and nothing else."""
    return developer_on(
        allows_all_tools=False,
        allowed_tools="whoami",
        allows_all_prompts=False,
        allows_all_resources=False,
        **limits,
    )


async def refusal(request) -> object:
    with pytest.raises(Exception) as raised:
        await request
    return mcp_error(raised.value)


def assert_refused(error, code: str, plan: str = "narrow") -> None:
    assert error.code == -32003
    assert error.message.startswith(f"{code}: ")
    assert error.data["code"] == code and error.data["plan"] == plan


def test_a_whoami_only_plan_sees_and_gets_no_prompt_resource_or_completion(gateway_bridge):
    developer = whoami_only()

    async def scenario():
        async with http_client(gateway_bridge.url, developer.plain_key) as client:
            listed = (
                (await client.list_prompts()).prompts,
                (await client.list_resources()).resources,
                (await client.list_resource_templates()).resource_templates,
            )
            refused = (
                await refusal(client.get_prompt("greet", {"name": "Ada"})),
                await refusal(client.read_resource("notes://today")),
                await refusal(client.complete(GREET, {"name": "name", "value": "A"})),
                await refusal(client.complete(NOTES_OF_A_DAY, {"name": "day", "value": "m"})),
                await refusal(client.get_prompt("no_such_prompt", {})),
            )
            whoami = await client.call_tool("whoami", {})
            return listed, refused, whoami

    listed, refused, whoami = anyio.run(scenario)
    assert listed == ([], [], [])
    prompt, resource, prompt_completion, template_completion, unknown = refused
    assert_refused(unknown, "prompt_not_in_plan")  # whether a prompt outside the plan exists is not told
    assert_refused(prompt, "prompt_not_in_plan")
    assert "'greet'" in prompt.message and "Narrow (narrow)" in prompt.message
    assert_refused(resource, "resource_not_in_plan")
    assert "'notes://today'" in resource.message
    assert_refused(prompt_completion, "prompt_not_in_plan")
    assert_refused(template_completion, "resource_not_in_plan")
    assert whoami.structured_content["plan"]["prompts"] == []
    assert whoami.structured_content["plan"]["resources"] == []


def test_a_plan_serves_exactly_the_prompts_and_resources_it_lists(gateway_bridge):
    developer = developer_on(
        allows_all_prompts=False,
        allowed_prompts="gr*",
        allows_all_resources=False,
        allowed_resources="notes://today",
    )
    everything = developer_on(code="open", name="Open")  # a plan with no restriction: everything

    async def scenario():
        async with http_client(gateway_bridge.url, developer.plain_key) as client:
            lists = (
                [prompt.name for prompt in (await client.list_prompts()).prompts],
                [str(resource.uri) for resource in (await client.list_resources()).resources],
                (await client.list_resource_templates()).resource_templates,
            )
            served = (
                await client.get_prompt("greet", {"name": "Ada"}),
                await client.read_resource("notes://today"),
                await client.complete(GREET, {"name": "name", "value": "A"}),
            )
            refused = (
                await refusal(client.read_resource("notes://monday")),
                await refusal(client.complete(NOTES_OF_A_DAY, {"name": "day", "value": "m"})),
            )
        async with http_client(gateway_bridge.url, everything.plain_key) as client:
            open_lists = (
                [prompt.name for prompt in (await client.list_prompts()).prompts],
                [template.uri_template for template in (await client.list_resource_templates()).resource_templates],
                (await client.read_resource("notes://monday")).contents[0].text,
                await refusal(client.get_prompt("no_such_prompt", {})),
            )
        return lists, served, refused, open_lists

    lists, served, refused, open_lists = anyio.run(scenario)
    assert lists == (["greet"], ["notes://today"], [])
    prompt, resource, completion = served
    assert prompt.messages[0].content.text.startswith("Hello Ada")
    assert resource.contents[0].text == "nothing planned"
    assert completion.completion.values[:2] == ["Ada", "Alan"]
    assert_refused(refused[0], "resource_not_in_plan")
    assert_refused(refused[1], "resource_not_in_plan")
    assert open_lists[:3] == (["greet"], ["notes://{day}"], "notes of monday")
    assert open_lists[3].code == -32602 and "Unknown prompt" in open_lists[3].message


@pytest.mark.parametrize("at_cap", ["refuse", "overage"])
def test_a_reached_monthly_cap_refuses_prompts_resources_and_completions(gateway_bridge, at_cap):
    developer = developer_on(code=f"capped-{at_cap}", monthly_calls_per_seat=2, at_cap=at_cap)
    UsageEventFactory.create_batch(2, developer=developer)  # the cap: 2 calls × 1 seat, all made

    async def scenario():
        async with http_client(gateway_bridge.url, developer.plain_key) as client:
            requests = (
                client.get_prompt("greet", {"name": "Ada"}),
                client.read_resource("notes://today"),
                client.complete(GREET, {"name": "name", "value": "A"}),
            )
            answers = []
            for request in requests:
                try:
                    answers.append(await request)
                except Exception as exc:
                    answers.append(mcp_error(exc))
            return answers

    answers = anyio.run(scenario)
    if at_cap == "refuse":
        for error in answers:
            assert_refused(error, "monthly_cap_reached", plan=f"capped-{at_cap}")
            assert error.data["monthly_cap"] == 2
    else:  # overage: served beyond the cap, as calls are
        prompt, resource, completion = answers
        assert prompt.messages[0].content.text.startswith("Hello Ada")
        assert resource.contents[0].text == "nothing planned"
        assert completion.completion.values[:2] == ["Ada", "Alan"]


def test_prompts_resources_and_completions_are_not_usage_and_leave_the_cap_alone(gateway_bridge):
    developer = developer_on(code="two", monthly_calls_per_seat=2)

    async def scenario():
        async with http_client(gateway_bridge.url, developer.plain_key) as client:
            for _ in range(3):  # more than the cap, none of them a call
                await client.get_prompt("greet", {"name": "Ada"})
                await client.read_resource("notes://today")
                await client.complete(GREET, {"name": "name", "value": "A"})
            first = await client.call_tool("ping", {})
            second = await client.call_tool("ping", {})
            third = await refusal(client.call_tool("ping", {}))
            return first, second, third, await refusal(client.get_prompt("greet", {"name": "Ada"}))

    first, second, third, prompt = anyio.run(scenario)
    assert not first.is_error and not second.is_error
    assert_refused(third, "monthly_cap_reached", plan="two")
    assert_refused(prompt, "monthly_cap_reached", plan="two")  # now the calls reached the cap
    usage_written(2)
    assert list(UsageEvent.objects.filter(developer=developer).values_list("tool_name", flat=True)) == ["ping"] * 2


def test_prompts_resources_and_completions_take_rate_limit_tokens(gateway_bridge):
    rate_buckets.reset()
    developer = developer_on(code="slow", rate_limit_per_developer=2)

    async def scenario():
        async with http_client(gateway_bridge.url, developer.plain_key) as client:
            await client.get_prompt("greet", {"name": "Ada"})
            await client.read_resource("notes://today")
            return (
                await refusal(client.complete(GREET, {"name": "name", "value": "A"})),
                await refusal(client.call_tool("whoami", {})),
            )

    completion, call = anyio.run(scenario)
    assert_refused(completion, "rate_limited", plan="slow")
    assert_refused(call, "rate_limited", plan="slow")


def test_a_spoofed_identity_in_prompts_and_completions_never_reaches_the_upstream(gateway_bridge):
    developer = DeveloperFactory()
    victim = DeveloperFactory()  # another organization's developer, whose ids a client tries to pass
    spoof = {"_developer_id": str(victim.id), "_organization_id": str(victim.organization_id)}

    async def scenario():
        async with http_client(gateway_bridge.url, developer.plain_key) as client:
            prompts = (await client.list_prompts()).prompts
            prompt = await client.get_prompt("greet", {"name": "Ada", **spoof})
            completed = await client.complete(GREET, {"name": "name", "value": "A"}, context_arguments=spoof)
            identity = await client.complete(GREET, {"name": "_developer_id", "value": ""})
            return prompts, prompt, completed, identity

    prompts, prompt, completed, identity = anyio.run(scenario)
    greet = next(prompt for prompt in prompts if prompt.name == "greet")
    assert [argument.name for argument in greet.arguments] == ["name"]  # the identity arguments are hidden
    text = prompt.messages[0].content.text
    assert str(developer.id) in text and str(developer.organization_id) in text
    assert str(victim.id) not in text and str(victim.organization_id) not in text
    assert completed.completion.values == [
        "Ada",
        "Alan",
        f"_developer_id={developer.id}",
        f"_organization_id={developer.organization_id}",
    ]
    assert identity.completion.values == []  # the upstream would have offered someone else's id


def test_stdio_gates_prompts_resources_and_identity_the_same_way(tmp_path):
    developer = whoami_only()
    victim = DeveloperFactory()
    allowed = developer_on(code="prompts-only", allows_all_resources=False)

    async def scenario():
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog, **gateway_env(OLD_HOTCROSS)) as client:
                listed = (await client.list_prompts()).prompts, (await client.list_resources()).resources
                refused = (
                    await refusal(client.get_prompt("greet", {"name": "Ada"})),
                    await refusal(client.read_resource("notes://today")),
                )
            async with stdio_session(allowed.plain_key, errlog, **gateway_env(OLD_HOTCROSS)) as client:
                spoofed = await client.get_prompt("greet", {"name": "Ada", "_developer_id": str(victim.id)})
                resource = await refusal(client.read_resource("notes://today"))
        return listed, refused, spoofed, resource

    listed, (prompt, resource_refused), spoofed, resource = anyio.run(scenario)
    assert listed == ([], [])
    assert_refused(prompt, "prompt_not_in_plan")
    assert_refused(resource_refused, "resource_not_in_plan")
    text = spoofed.messages[0].content.text
    assert str(allowed.id) in text and str(victim.id) not in text
    assert_refused(resource, "resource_not_in_plan", plan="prompts-only")
