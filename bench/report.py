"""Prints bench/out/results.json as the markdown tables of BENCHMARKS.md."""
import json
import sys

r = json.load(open(sys.argv[1]))
print(f"Date: {r['date']} · machine: {r['machine']} · {r['duration_s']} s per point\n")
print("| connections | mock req/s | gateway req/s | gateway/mock | mock p50 / p99 ms | gateway p50 / p99 ms | added p99 ms |")
print("|---|---|---|---|---|---|---|")
for p in r["nonstream"]:
    m, g = p["mock"], p["gw"]
    print(f"| {p['c']} | {m['rps']:.0f} | {g['rps']:.0f} | {100*g['rps']/m['rps']:.0f}% | {m['p50']:.2f} / {m['p99']:.2f} "
          f"| {g['p50']:.2f} / {g['p99']:.2f} | {g['p99']-m['p99']:.2f} |")
t = r["translated"]
print("\nTranslated path (OpenAI client → gateway → Anthropic-shaped mock) against same-dialect pass-through, 32 connections:\n")
print("| path | req/s | p50 / p99 ms |")
print("|---|---|---|")
print(f"| pass-through (OpenAI-compatible mock) | {t['passthrough']['rps']:.0f} | {t['passthrough']['p50']:.2f} / {t['passthrough']['p99']:.2f} |")
print(f"| translated (Anthropic mock) | {t['translated']['rps']:.0f} | {t['translated']['p50']:.2f} / {t['translated']['p99']:.2f} |")
print(f"| translated / pass-through | {100*t['translated']['rps']/t['passthrough']['rps']:.0f}% | |")
sm, sg = r["stream_mock"], r["stream_gw"]
print("\nStreaming, 20 chunks 5 ms apart, 32 connections:\n")
print("| | streams/s | first chunk p50 / p99 ms | gap p50 / p99 ms |")
print("|---|---|---|---|")
for name, s in (("mock direct", sm), ("through gateway", sg), ("translated (Anthropic mock)", r["stream_translated"])):
    print(f"| {name} | {s['rps']:.0f} | {s['ttft_ms']['p50']:.2f} / {s['ttft_ms']['p99']:.2f} | {s['gap_ms']['p50']:.2f} / {s['gap_ms']['p99']:.2f} |")
print(f"| added | | {sg['ttft_ms']['p50']-sm['ttft_ms']['p50']:.2f} / {sg['ttft_ms']['p99']-sm['ttft_ms']['p99']:.2f} "
      f"| {sg['gap_ms']['p50']-sm['gap_ms']['p50']:.2f} / {sg['gap_ms']['p99']-sm['gap_ms']['p99']:.2f} |")
rt = r["rate_p99_under_5ms"]
print(f"\nHighest constant rate with p99 < 5 ms (non-streaming): mock {rt['mock']} req/s, gateway {rt['gw']} req/s.\n")
rss = r["rss_kb"]
s = rss["soak_samples"]
mins = r["soak"]["seconds"] / 60
growth = (s[-1] - s[0]) / 1024 / (mins * 0.9) if len(s) > 1 and mins > 0 else 0
print("| gateway RSS | MB |")
print("|---|---|")
print(f"| idle after start | {rss['idle']/1024:.1f} |")
print(f"| under load (32 connections) | {rss['load_32']/1024:.1f} |")
print(f"| {r['hold']['open']} concurrent open streams | {rss['streams_1000']/1024:.1f} |")
print(f"| soak start → end ({r['soak']['seconds']} s at {r['soak']['rps']} req/s) | {s[0]/1024:.1f} → {s[-1]/1024:.1f} |")
print(f"| growth during soak | {growth:+.2f} MB/min |")
