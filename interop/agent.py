"""An a2a-sdk 1.3.0 agent for the gateway's interop tests (project-written).

Serves JSON-RPC at `/` (with the SDK's 0.3 compat on the same endpoint),
HTTP+JSON under `/rest`, and its card at `/.well-known/agent-card.json`, on
127.0.0.1 and the port given on the command line. With a second port, it is
a gRPC-only agent instead: the SDK's gRPC server (`lf.a2a.v1.A2AService`,
cleartext HTTP/2) on that port, and a card (still served over HTTP on the
first port) whose only interface is GRPC. Behaviour by input text:
`message` answers with a single Message; `wait...` starts a task that works
until it is canceled (or 60 s pass); `slow...` works for 5 s (time to
register a push config) and completes; anything else runs a task that streams
a working status, an `echo: <text>` artifact and completes.

With `--push`, the card offers push notifications and the SDK's own
push sender (`BasePushNotificationSender`, an in-memory config store)
posts each task event to the configs the caller registered.

Usage: python agent.py PORT [GRPC_PORT] [--push]
"""

import asyncio
import sys

import grpc
import httpx
import uvicorn
from starlette.applications import Starlette

from a2a.server.request_handlers import GrpcHandler
from a2a.types import a2a_pb2_grpc

from a2a.helpers import new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import (
    create_agent_card_routes,
    create_jsonrpc_routes,
    create_rest_routes,
)
from a2a.server.tasks import (
    BasePushNotificationSender,
    InMemoryPushNotificationConfigStore,
    InMemoryTaskStore,
    TaskUpdater,
)
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Task,
    TaskState,
    TaskStatus,
)


class EchoExecutor(AgentExecutor):
    """Echoes the user's text; see the module docstring."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        if text == "message":
            await event_queue.enqueue_event(
                new_text_message("echo: message", context_id=context.context_id)
            )
            return
        if context.current_task is None:
            await event_queue.enqueue_event(
                Task(
                    id=context.task_id,
                    context_id=context.context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                    history=[context.message],
                )
            )
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work()
        if text.startswith("wait"):
            await asyncio.sleep(60)
        if text.startswith("slow"):
            await asyncio.sleep(5)
        await updater.add_artifact([new_text_part(f"echo: {text}")], name="echo")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.cancel()


async def serve(app: Starlette, port: int, grpc_port: int | None, handler) -> None:
    if grpc_port is not None:
        server = grpc.aio.server()
        a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(handler), server)
        server.add_insecure_port(f"127.0.0.1:{grpc_port}")
        await server.start()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    await uvicorn.Server(config).serve()


def main() -> None:
    push = "--push" in sys.argv
    args = [arg for arg in sys.argv[1:] if arg != "--push"]
    port = int(args[0])
    grpc_port = int(args[1]) if len(args) > 1 else None
    base = f"http://127.0.0.1:{port}"
    if grpc_port is None:
        interfaces = [
            AgentInterface(url=f"{base}/", protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=f"{base}/rest", protocol_binding="HTTP+JSON", protocol_version="1.0"),
        ]
    else:
        interfaces = [
            AgentInterface(
                url=f"127.0.0.1:{grpc_port}", protocol_binding="GRPC", protocol_version="1.0"
            )
        ]
    card = AgentCard(
        name="sdk-echo",
        description="a2a-sdk echo agent for Convergio interop tests",
        version="1.0.0",
        supported_interfaces=interfaces,
        capabilities=AgentCapabilities(streaming=True, push_notifications=push),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(id="echo", name="echo", description="echoes text", tags=["echo"])
        ],
    )
    push_store = InMemoryPushNotificationConfigStore() if push else None
    handler = DefaultRequestHandler(
        agent_executor=EchoExecutor(),
        task_store=InMemoryTaskStore(),
        agent_card=card,
        push_config_store=push_store,
        push_sender=(
            BasePushNotificationSender(httpx.AsyncClient(), push_store) if push else None
        ),
    )
    routes = []
    routes += create_agent_card_routes(card)
    routes += create_rest_routes(handler, path_prefix="/rest")
    routes += create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True)
    app = Starlette(routes=routes)
    asyncio.run(serve(app, port, grpc_port, handler))


if __name__ == "__main__":
    main()
