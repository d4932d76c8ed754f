// The official `openai` npm client against ciel's OpenAI-compatible API,
// unchanged but for the base URL: model listing, a chat completion, a
// streamed one (with include_usage) and a legacy completion. Prints one JSON
// object with what came back; exits 1 with the first failure.
//
//   OPENAI_API_KEY=sk-ciel-... NODE_EXTRA_CA_CERTS=ca.pem \
//       node oai_client.mjs https://HOST:PORT/openai/v1 MODEL
//
// Copy it beside the node_modules that hold the package (tests/llm/node-deps.sh).
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY, maxRetries: 0 });
const out = {};
const fail = (what) => {
	console.log(JSON.stringify(out));
	console.error(`oai_client: ${what}`);
	process.exit(1);
};

try {
	const models = await client.models.list();
	out.models = models.data.map((m) => m.id);
	if (!out.models.includes(model)) fail(`models.list lacks ${model}`);

	const chat = await client.chat.completions.create({
		model,
		messages: [{ role: "user", content: "Once upon a time" }],
		max_tokens: 24,
		temperature: 0,
	});
	out.chat = chat.choices[0].message.content;
	out.chat_usage = chat.usage;
	if (!out.chat || !chat.usage || chat.usage.completion_tokens < 1)
		fail("chat: no text or no usage");

	const stream = await client.chat.completions.create({
		model,
		messages: [{ role: "user", content: "Once upon a time" }],
		max_tokens: 24,
		temperature: 0,
		stream: true,
		stream_options: { include_usage: true },
	});
	out.stream = "";
	out.chunks = 0;
	for await (const chunk of stream) {
		out.chunks++;
		if (chunk.choices.length) out.stream += chunk.choices[0].delta?.content ?? "";
		if (chunk.usage) out.stream_usage = chunk.usage;
	}
	if (out.chunks < 3 || !out.stream) fail("stream: too few chunks or no text");
	if (!out.stream_usage) fail("stream: no usage chunk");
	// greedy both times: the same words, however they were cut into chunks
	if (out.stream !== out.chat) fail("stream and chat differ at temperature 0");

	const comp = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 8 });
	out.completion = comp.choices[0].text;
	if (!comp.usage) fail("completion: no usage");
} catch (e) {
	out.error = { status: e.status ?? null, message: String(e.message ?? e) };
	fail(`request failed: ${out.error.status} ${out.error.message}`);
}
console.log(JSON.stringify(out));
