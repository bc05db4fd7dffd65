// The official A2A JavaScript SDK (@a2a-js/sdk) as a client of the gateway,
// for gateway/tests/js_sdk.rs. For each base URL in A2A_BASE_URLS (a JSON
// array), and each transport in A2A_TRANSPORTS (JSONRPC, HTTP+JSON), it
// builds a client the way the SDK's users do (ClientFactory.createFromUrl,
// which resolves `.well-known/agent-card.json` relative to the base URL),
// sends one message and prints one JSON line per attempt: the card URL the
// SDK computed, and the answer's state and text, or the error.
import path from "node:path";

const env = process.env.CONVERGIO_JS_SDK_ENV;
const sdk = await import(path.join(env, "node_modules/@a2a-js/sdk/dist/client/index.js"));
const types = await import(path.join(env, "node_modules/@a2a-js/sdk/dist/index.js"));

const baseUrls = JSON.parse(process.env.A2A_BASE_URLS);
const transports = JSON.parse(process.env.A2A_TRANSPORTS ?? '["JSONRPC", "HTTP+JSON"]');

for (const baseUrl of baseUrls) {
  for (const transport of transports) {
    const cardUrl = new URL(".well-known/agent-card.json", baseUrl).href;
    const line = { baseUrl, transport, cardUrl };
    try {
      const factory = new sdk.ClientFactory(
        sdk.ClientFactoryOptions.createFrom(sdk.ClientFactoryOptions.default, {
          preferredTransports: [transport],
        }),
      );
      const client = await factory.createFromUrl(baseUrl);
      const answer = await client.sendMessage({
        message: {
          messageId: crypto.randomUUID(),
          role: types.Role.ROLE_USER,
          parts: [{ content: { $case: "text", value: `hello over ${transport}` } }],
        },
      });
      const task = answer?.payload?.$case === "task" ? answer.payload.value : answer?.task ?? answer;
      line.state = types.TaskState?.[task?.status?.state] ?? task?.status?.state ?? null;
      line.text = task?.artifacts?.[0]?.parts?.[0]?.content?.value ?? null;
    } catch (error) {
      line.error = String(error?.message ?? error);
    }
    console.log(JSON.stringify(line));
  }
}
