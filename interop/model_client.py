"""The a2a-sdk 1.3.0 client of a model agent served by Convergio (issue 17),
project-written. Talks to one model agent through the gateway over the
binding named on the command line: reads its card, sends one blocking and
one streaming message, and checks the model's answer (the text EXPECTED)
arrives both ways. Prints one `ok <check>` line per passed check; any
failure raises (non-zero exit).

Usage: python model_client.py AGENT_URL BINDING EXPECTED
(BINDING: JSONRPC or HTTP+JSON)
"""

import asyncio
import sys
import uuid

import httpx

from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import (
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskState,
)


def request(text: str) -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(
            role=Role.ROLE_USER,
            message_id=str(uuid.uuid4()),
            parts=[Part(text=text)],
        ),
        configuration=SendMessageConfiguration(return_immediately=False),
    )


def ok(check: str) -> None:
    print(f"ok {check}", flush=True)


def texts(events) -> str:
    """Every text the events carry, in order."""
    found = []
    for event in events:
        if event.HasField("task"):
            for artifact in event.task.artifacts:
                found.extend(part.text for part in artifact.parts)
        if event.HasField("message"):
            found.extend(part.text for part in event.message.parts)
        if event.HasField("artifact_update"):
            found.extend(part.text for part in event.artifact_update.artifact.parts)
    return "".join(found)


async def main() -> None:
    url, binding, expected = sys.argv[1], sys.argv[2], sys.argv[3]
    calls = httpx.AsyncClient(timeout=60)
    async with httpx.AsyncClient(timeout=20) as http:
        card = await A2ACardResolver(http, url).get_agent_card()
    # Every HTTP interface is the gateway's agent URL; gRPC is the gateway's
    # host:port (the binding is checked by interop/client.py).
    urls = {
        interface.url
        for interface in card.supported_interfaces
        if interface.protocol_binding != "GRPC"
    }
    # The agent's base URL, with the trailing slash the gateway advertises.
    assert urls == {url.rstrip("/") + "/"}, f"card interfaces not rewritten to the gateway: {urls}"
    ok("card")

    blocking = await create_client(
        url,
        ClientConfig(streaming=False, supported_protocol_bindings=[binding], httpx_client=calls),
    )
    events = [event async for event in blocking.send_message(request("hello"))]
    assert expected in texts(events), events
    if events[0].HasField("task"):
        assert events[0].task.status.state == TaskState.TASK_STATE_COMPLETED, events
    ok("blocking")

    streaming = await create_client(
        url,
        ClientConfig(streaming=True, supported_protocol_bindings=[binding], httpx_client=calls),
    )
    events = [event async for event in streaming.send_message(request("stream please"))]
    assert expected in texts(events), events
    ok("streaming")


asyncio.run(main())
