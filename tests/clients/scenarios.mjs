// Real client libraries driven against the gateway, one scenario per run:
//   node scenarios.mjs <scenario>   (env: JUSINFER_URL, JUSINFER_KEY, MODEL)
// Each uses the library as its own documentation says (base URL and key only) and prints
// one JSON object with what the client saw; a thrown error exits non-zero with its text.
// tests/e2e/test_real_clients.py runs them and asserts on the output.

import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { zodOutputFormat } from "@anthropic-ai/sdk/helpers/zod";
import { generateText, streamText, Output, tool, stepCountIs } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createAnthropic } from "@ai-sdk/anthropic";
import { z } from "zod";

const url = process.env.JUSINFER_URL;
const key = process.env.JUSINFER_KEY;
const model = process.env.MODEL;

const openaiClient = () => new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0 });
const anthropicClient = () => new Anthropic({ baseURL: url, apiKey: key, maxRetries: 0 });
const aiOpenAI = () => createOpenAI({ baseURL: `${url}/v1`, apiKey: key });
const aiAnthropic = () => createAnthropic({ baseURL: `${url}/v1`, apiKey: key });

const City = z.object({ city: z.string(), population: z.number().int() });

const scenarios = {
  // Node `openai`: responses.stream() accumulates every event into the final Response
  // (it throws on a delta to a content part that was never opened).
  async "openai-responses-stream"() {
    const summary = process.env.SUMMARY;
    const stream = openaiClient().responses.stream({
      model,
      input: "Say hello.",
      ...(summary ? { reasoning: { summary } } : {}),
    });
    const kinds = new Set();
    for await (const ev of stream) kinds.add(ev.type);
    const final = await stream.finalResponse();
    return {
      kinds: [...kinds],
      output: final.output.map((o) => ({
        type: o.type,
        content: o.content ?? null,
        summary: o.summary ?? null,
      })),
      text: final.output
        .filter((o) => o.type === "message")
        .flatMap((o) => o.content)
        .filter((c) => c.type === "output_text")
        .map((c) => c.text)
        .join(""),
    };
  },

  // Node `openai`: a streamed Chat tool call assembled by the SDK.
  async "openai-chat-stream-tools"() {
    const stream = openaiClient().chat.completions.stream({
      model,
      messages: [{ role: "user", content: "Weather in Edinburgh and Apple's stock?" }],
      tools: [
        { type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } },
        { type: "function", function: { name: "get_stock_price", parameters: { type: "object", properties: { ticker: { type: "string" } } } } },
      ],
    });
    const final = await stream.finalChatCompletion();
    const m = final.choices[0].message;
    return {
      finish: final.choices[0].finish_reason,
      calls: (m.tool_calls ?? []).map((c) => ({ id: c.id, name: c.function.name, args: JSON.parse(c.function.arguments) })),
    };
  },

  // Vercel AI SDK, `openai(model)`: the Responses API with `store` on (its default); the
  // second and third turns send the earlier items back as `item_reference`s.
  async "ai-sdk-responses-turns"() {
    const m = aiOpenAI()(model);
    const messages = [{ role: "user", content: "First question." }];
    const texts = [];
    for (const q of ["Second question.", "Third question."]) {
      const r = await generateText({ model: m, messages });
      texts.push(r.text);
      messages.push(...r.response.messages, { role: "user", content: q });
    }
    const s = streamText({ model: m, messages });
    let streamed = "";
    for await (const t of s.textStream) streamed += t;
    texts.push(streamed);
    return { texts, reasoning: (await s.reasoningText) ?? null };
  },

  // Vercel AI SDK, Chat Completions: a tool loop the SDK runs itself.
  async "ai-sdk-chat-tools"() {
    const calls = [];
    const r = await generateText({
      model: aiOpenAI().chat(model),
      prompt: "Weather in Edinburgh and Apple's stock?",
      tools: {
        GetWeatherArgs: tool({
          inputSchema: z.object({ city: z.string().optional(), country: z.string().optional(), units: z.string().optional() }),
          execute: async (a) => { calls.push(["GetWeatherArgs", a]); return { temp: 11 }; },
        }),
        get_stock_price: tool({
          inputSchema: z.object({ ticker: z.string().optional() }),
          execute: async (a) => { calls.push(["get_stock_price", a]); return { price: 200 }; },
        }),
      },
      stopWhen: stepCountIs(2),
    });
    return { steps: r.steps.length, calls, finish: r.finishReason };
  },

  // Vercel AI SDK: structured output (Responses by default, or `.chat()`).
  async "ai-sdk-object"() {
    const m = process.env.CHAT ? aiOpenAI().chat(model) : aiOpenAI()(model);
    const r = await generateText({ model: m, prompt: "Paris?", output: Output.object({ schema: City }) });
    return { object: r.output };
  },

  // Vercel AI SDK, `@ai-sdk/anthropic`: Messages, whole and streamed.
  async "ai-sdk-anthropic"() {
    const m = aiAnthropic()(model);
    const r = await generateText({ model: m, prompt: "Say hello.", maxOutputTokens: 200 });
    const s = streamText({ model: m, prompt: "Say hello.", maxOutputTokens: 200 });
    let streamed = "";
    for await (const t of s.textStream) streamed += t;
    return { text: r.text, streamed, usage: r.usage };
  },

  // `@anthropic-ai/sdk` messages.parse with a zod output format (structured outputs).
  async "anthropic-parse"() {
    const msg = await anthropicClient().messages.parse({
      model,
      max_tokens: 300,
      messages: [{ role: "user", content: "Paris?" }],
      output_config: { format: zodOutputFormat(City) },
    });
    return { parsed: msg.parsed_output, stop: msg.stop_reason };
  },

  // `@anthropic-ai/sdk` streaming with the SDK's own accumulator.
  async "anthropic-stream"() {
    const s = anthropicClient().messages.stream({
      model,
      max_tokens: 300,
      messages: [{ role: "user", content: "Say hello." }],
    });
    const final = await s.finalMessage();
    return { blocks: final.content.map((b) => b.type), stop: final.stop_reason, usage: final.usage };
  },
};

const name = process.argv[2];
if (!scenarios[name]) {
  console.error(`unknown scenario ${name}: ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
try {
  console.log(JSON.stringify(await scenarios[name]()));
} catch (e) {
  console.error(`${e?.constructor?.name ?? "Error"}: ${e?.message ?? e}`);
  if (e?.responseBody) console.error(e.responseBody);
  process.exit(1);
}
