"""The a2a-sdk 1.3.0 client side of the gateway's interop tests
(project-written). Talks to one agent through the gateway, over the binding
named on the command line, and checks card discovery, blocking and streaming
sends (task and message replies), get, list, cancel and subscribe. Prints one
`ok <check>` line per passed check; any failure raises (non-zero exit).

Usage: python client.py AGENT_URL BINDING [direct|refused]
(BINDING: JSONRPC, HTTP+JSON or GRPC — the SDK's gRPC client, dialling the
card's gRPC `host:port` in cleartext with the card's tenant; `direct` skips the card-rewrite check, for
talking to the agent without the gateway while debugging; `refused` expects
the first send to be refused and prints `ok refused <error>`)

With INTEROP_BEARER_TOKEN set, every call carries
`Authorization: Bearer <token>` (the gateway's authentication); cards are
public and fetched without it.
"""

import os

import asyncio
import sys
import uuid
from urllib.parse import urlparse

import grpc
import httpx

from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)


def request(text: str, return_immediately: bool = False) -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(
            role=Role.ROLE_USER,
            message_id=str(uuid.uuid4()),
            parts=[Part(text=text)],
        ),
        configuration=SendMessageConfiguration(return_immediately=return_immediately),
    )


def ok(check: str) -> None:
    print(f"ok {check}", flush=True)


async def collect(client, send_request):
    return [event async for event in client.send_message(send_request)]


async def main() -> None:
    url, binding = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else ""
    direct = mode == "direct"
    token = os.environ.get("INTEROP_BEARER_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    calls = httpx.AsyncClient(timeout=20, headers=headers)

    async with httpx.AsyncClient(timeout=20) as http:
        card = await A2ACardResolver(http, url).get_agent_card()
    urls = {
        interface.url
        for interface in card.supported_interfaces
        if interface.protocol_binding != "GRPC"
    }
    # The gateway advertises the agent's base URL with its trailing slash
    # (clients resolve the card relative to it).
    assert direct or urls == {url.rstrip("/") + "/"}, f"card interfaces not rewritten to the gateway: {urls}"
    grpc_urls = {
        interface.url
        for interface in card.supported_interfaces
        if interface.protocol_binding == "GRPC"
    }
    # gRPC is dialled at the gateway's host:port; the tenant names the agent.
    assert direct or grpc_urls == {urlparse(url).netloc}, f"gRPC interface: {grpc_urls}"
    assert not card.signatures, "rewritten card must not carry upstream signatures"
    ok("card")

    if mode == "refused":
        # The gateway refuses a bad credential on every path, the card's too.
        try:
            refused = await create_client(
                url,
                ClientConfig(
                    streaming=False,
                    supported_protocol_bindings=[binding],
                    httpx_client=calls,
                ),
            )
            await collect(refused, request("hello"))
        except Exception as error:  # the SDK's error type varies by binding
            print(f"ok refused {error!r}", flush=True)
            return
        raise SystemExit("a call with a wrong token was not refused")

    def config(streaming: bool) -> ClientConfig:
        return ClientConfig(
            streaming=streaming,
            supported_protocol_bindings=[binding],
            httpx_client=calls,
            grpc_channel_factory=grpc.aio.insecure_channel,
        )

    blocking = await create_client(url, config(False))
    streaming = await create_client(url, config(True))


    events = await collect(blocking, request("hello"))
    assert len(events) == 1 and events[0].HasField("task"), events
    task = events[0].task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task
    assert task.artifacts[0].parts[0].text == "echo: hello", task
    ok("blocking-task")

    events = await collect(blocking, request("message"))
    assert events[0].HasField("message"), events
    assert events[0].message.parts[0].text == "echo: message", events
    ok("blocking-message")

    events = await collect(streaming, request("streamed"))
    assert events[0].HasField("task"), events
    last = events[-1]
    assert last.HasField("status_update"), events
    assert last.status_update.status.state == TaskState.TASK_STATE_COMPLETED, events
    assert any(
        event.HasField("artifact_update")
        and event.artifact_update.artifact.parts[0].text == "echo: streamed"
        for event in events
    ), events
    ok("streaming-task")

    events = await collect(streaming, request("message"))
    assert len(events) == 1 and events[0].HasField("message"), events
    ok("streaming-message")

    fetched = await blocking.get_task(GetTaskRequest(id=task.id))
    assert fetched.id == task.id and fetched.status.state == TaskState.TASK_STATE_COMPLETED
    ok("get")

    listed = await blocking.list_tasks(ListTasksRequest())
    ids = {listed_task.id for listed_task in listed.tasks}
    assert task.id in ids, ids
    ok("list")

    events = await collect(blocking, request("wait-cancel", return_immediately=True))
    waiting = events[0].task
    assert waiting.status.state in (
        TaskState.TASK_STATE_SUBMITTED,
        TaskState.TASK_STATE_WORKING,
    ), waiting
    canceled = await blocking.cancel_task(CancelTaskRequest(id=waiting.id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED, canceled
    ok("cancel")

    events = await collect(blocking, request("wait-subscribe", return_immediately=True))
    waiting = events[0].task
    seen = []
    first = asyncio.Event()

    async def subscribe():
        async for event in streaming.subscribe(SubscribeToTaskRequest(id=waiting.id)):
            seen.append(event)
            first.set()

    subscriber = asyncio.create_task(subscribe())
    await asyncio.wait_for(first.wait(), 20)
    await blocking.cancel_task(CancelTaskRequest(id=waiting.id))
    await asyncio.wait_for(subscriber, 20)
    assert seen[0].HasField("task") and seen[0].task.id == waiting.id, seen
    assert seen[-1].status_update.status.state == TaskState.TASK_STATE_CANCELED, seen
    ok("subscribe")

    await blocking.close()
    await streaming.close()


if __name__ == "__main__":
    asyncio.run(main())
