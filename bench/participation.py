"""Participation benchmarks (G1–G3): routing throughput, hot-topic mining on 100,000 messages,
posting and listing Open311 requests under sustained load (p50/p99).

    python bench/participation.py --quick     # 20,000 routed messages, 20,000 mined, 300 posts
    python bench/participation.py             # 100,000 routed, 100,000 mined, 2,000 posts
    python bench/participation.py --only open311 --posts 1000   # Open311 alone, bare and served
    python bench/participation.py --only mining                 # hot-topic mining alone (100,000 messages)
    python bench/participation.py --only topics                 # topics of 1,000 answers, beside LDA

- **Routing**: the router (word + char TF-IDF, LinearSVC) and the peer (TF-IDF + LinearSVC) trained on
  the NYC 311 sample (``../shared/data``) and on the generated Chinese set; messages/s of ``predict``
  over ``--messages`` texts (the files' texts repeated), best of 3.
- **Hot topics**: :func:`citytwin.participation.demand.hot_topics` on ``--mine`` generated Chinese
  messages with places in Beijing and times over four weeks (seconds; jieba segmentation included).
- **Topics**: :func:`citytwin.participation.topics.topic_summary` of ``--answers`` generated Chinese
  answers (five departments' problems), with the stability rule and with k = 5, beside scikit-learn's
  LDA with 5 topics on the same terms (seconds and the ratio; the quality is tested in
  ``tests/participation/test_topics.py``).
- **Open311**: ``--posts`` form-encoded POSTs from 4 client threads (FastAPI TestClient, in process:
  no network), then 200 ``GET requests.json?status=open`` over the store; latency p50/p99 in ms.
  Twice in the same run: on the bare router (``open311``), and through ``citytwin serve``'s app
  (``open311_served``: the resident's token as ``api_key``, the audit rows, the workspace's config),
  with the ratio served ÷ bare (``open311_served_over_bare``).

Prints one JSON object; the machine size is included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _p(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def routing(n: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from citytwin.participation.router import baseline_pipeline, router_pipeline
    from citytwin.participation.text import join_text
    from participation.zh_messages import messages

    out: dict[str, Any] = {}
    nyc = REPO.parent / "shared" / "data" / "complaints_311" / "nyc_311_service_requests_YangziXinJas.csv"
    sets = {}
    if nyc.exists():
        d = pd.read_csv(nyc)
        sets["nyc_311"] = (join_text([d["complaint_type"].tolist(), d["descriptor"].tolist()]), d["agency"].tolist())
    zh = messages(60)
    sets["zh_generated"] = ([t for t, _ in zh], [y for _, y in zh])
    for name, (texts, labels) in sets.items():
        big = np.asarray((texts * (n // len(texts) + 1))[:n], dtype=object)
        row: dict[str, Any] = {"messages": n}
        for kind, make in (("router", router_pipeline), ("baseline", baseline_pipeline)):
            t0 = time.perf_counter()
            m = make().fit(np.asarray(texts, dtype=object), labels)
            fit = time.perf_counter() - t0
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                m.predict(big)
                best = min(best, time.perf_counter() - t0)
            row[kind] = {"fit_s": round(fit, 3), "messages_per_s": round(n / best)}
        out[name] = row
    return out


def mining(n: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from citytwin.participation.demand import hot_topics
    from participation.zh_messages import messages

    rng = np.random.default_rng(0)
    base = messages(200, seed=1)
    texts = [base[i][0] for i in rng.integers(0, len(base), n)]
    now = pd.Timestamp("2026-03-01", tz="UTC")
    df = pd.DataFrame({"text": texts, "time": now - pd.to_timedelta(rng.uniform(0, 28, n), unit="D"),
                       "lat": rng.uniform(39.8, 40.05, n), "lon": rng.uniform(116.2, 116.55, n)})
    t0 = time.perf_counter()
    t = hot_topics(df, text="text", time="time", now=now, window_days=7, min_count=5)
    s = time.perf_counter() - t0
    return {"messages": n, "seconds": round(s, 2), "messages_per_s": round(n / s), "clusters_ranked": len(t),
            "top": t.head(3)[["topic", "area", "n_recent", "n_previous", "heat"]].to_dict("records")}


def topics(n: int) -> dict[str, Any]:
    """Topics of ``n`` generated Chinese answers: :func:`topic_summary` with the stability rule and with
    k given (5, the generator's departments), beside scikit-learn's LDA (5 topics) on the counts of the
    same terms, all in this run; seconds (segmentation included in ours, excluded from LDA's)."""
    from sklearn.decomposition import LatentDirichletAllocation
    from sklearn.feature_extraction.text import CountVectorizer

    from citytwin.participation.topics import terms, topic_summary
    from participation.zh_messages import messages

    pairs = messages(max(1, n // 5), seed=3)
    texts = [t for t, _ in pairs]
    topic_summary(texts[:20])  # jieba's dictionary loaded before timing
    t0 = time.perf_counter()
    rule = topic_summary(texts)
    t_rule = time.perf_counter() - t0
    t0 = time.perf_counter()
    five = topic_summary(texts, k=5)
    t_five = time.perf_counter() - t0
    counts = CountVectorizer(analyzer=lambda d: d).fit_transform([terms(t) for t in texts])
    t0 = time.perf_counter()
    lda = LatentDirichletAllocation(n_components=5, random_state=0).fit_transform(counts).argmax(axis=1)
    t_lda = time.perf_counter() - t0
    # no agreement with the departments is reported: a department's problems share no words (the topics
    # follow places and problems), so it would not say anything about quality (see test_topics.py for that)
    return {"answers": len(texts), "rule_s": round(t_rule, 2), "rule_k": rule["k"], "k5_s": round(t_five, 2),
            "lda5_s": round(t_lda, 2), "k5_over_lda5": round(t_five / t_lda, 3),
            "k5_top_terms": [[w for w, _ in t["terms"][:3]] for t in five["topics"]],
            "lda5_assigned": len(set(lda.tolist()))}


def open311(posts: int, threads: int = 4, *, served: bool = False) -> dict[str, Any]:
    """Open311 under load: on the bare router (``served=False``), or through ``citytwin serve``'s app
    (``create_server_app``: a resident's token as ``api_key`` checked per request, one audit row per
    request plus the store's own, the participation config read from the workspace)."""
    import json as _json

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from citytwin.foundation.cases import CaseStore
    from citytwin.foundation.workspace import Workspace
    from citytwin.service.open311 import make_router

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws", owner="admin")
        ws.add_user("open311", "public")
        key: dict[str, str] = {}
        if served:
            from citytwin.service.server import create_server_app

            (ws.root / "participation.json").write_text(_json.dumps({
                "bbox": [-76.72, 39.19, -76.52, 39.38], "services": [{"service_code": "pothole",
                                                                      "service_name": "Pothole"}],
                "departments": {"pothole": "Transportation"}}), encoding="utf-8")
            key = {"api_key": ws.catalog.issue_token("open311")[1]}
            app = create_server_app(ws)
        else:
            store = CaseStore.of(ws.as_user("open311"))
            app = FastAPI()
            app.include_router(make_router(store, services=[{"service_code": "pothole", "service_name": "Pothole"}],
                                           bbox=(-76.72, 39.19, -76.52, 39.38),
                                           departments={"pothole": "Transportation"}))
        client = TestClient(app)
        client.__enter__()  # the app's lifespan runs (the served app holds its catalog connection)
        lat_post: list[float] = []
        lock = threading.Lock()

        def worker(k: int) -> None:
            import random

            rnd = random.Random(k)
            for _ in range(posts // threads):
                form = {**key, "service_code": "pothole", "lat": str(39.2 + rnd.random() * 0.15),
                        "long": str(-76.7 + rnd.random() * 0.15), "description": "pothole on the street"}
                t0 = time.perf_counter()
                r = client.post("/open311/v2/requests.json", data=form)
                dt = time.perf_counter() - t0
                assert r.status_code == 201, r.text
                with lock:
                    lat_post.append(dt)

        t0 = time.perf_counter()
        ths = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        wall = time.perf_counter() - t0
        lat_get = []
        for _ in range(200):
            t1 = time.perf_counter()
            r = client.get("/open311/v2/requests.json?status=open",
                           headers={"Authorization": f"Bearer {key['api_key']}"} if key else None)
            lat_get.append(time.perf_counter() - t1)
            assert r.status_code == 200
        client.__exit__(None, None, None)
        return {"posts": len(lat_post), "threads": threads, "posts_per_s": round(len(lat_post) / wall, 1),
                "post_ms": {"p50": round(1000 * statistics.median(lat_post), 2), "p99": round(1000 * _p(lat_post, 0.99), 2)},
                "list_ms": {"rows": len(r.json()), "p50": round(1000 * statistics.median(lat_get), 2),
                            "p99": round(1000 * _p(lat_get, 0.99), 2)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--messages", type=int)
    ap.add_argument("--mine", type=int)
    ap.add_argument("--posts", type=int)
    ap.add_argument("--only", choices=["open311", "mining", "topics"], help="run only this part")
    ap.add_argument("--answers", type=int, help="answers for the topic summary (default 1,000; --quick 300)")
    a = ap.parse_args()
    n = a.messages or (20_000 if a.quick else 100_000)
    m = a.mine or (20_000 if a.quick else 100_000)
    p = a.posts or (300 if a.quick else 2_000)
    res: dict[str, Any] = {"machine": {"nproc": os.cpu_count(), "load": os.getloadavg()[0],
                                       "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                                       / 2**30, 1)}}
    k = a.answers or (300 if a.quick else 1_000)
    if a.only in ("mining", "topics"):
        res["hot_topics" if a.only == "mining" else "topics"] = mining(m) if a.only == "mining" else topics(k)
        print(json.dumps(res, ensure_ascii=False, indent=2, default=str))
        return
    if a.only is None:
        res.update(routing=routing(n), hot_topics=mining(m), topics=topics(k))
    res["open311"] = open311(p)
    res["open311_served"] = open311(p, served=True)
    res["open311_served_over_bare"] = {
        "posts_per_s": round(res["open311_served"]["posts_per_s"] / res["open311"]["posts_per_s"], 2),
        "post_p99": round(res["open311_served"]["post_ms"]["p99"] / res["open311"]["post_ms"]["p99"], 2)}
    print(json.dumps(res, ensure_ascii=False, indent=2, default=str))


if __name__ == "__main__":
    main()
