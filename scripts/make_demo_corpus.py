#!/usr/bin/env python3
"""Writes the demo corpus: deterministic synthetic records as JSON Lines {"id": N, "text": "..."}.

Each record is a short biography-like paragraph (~60 Qwen3 tokens) built from fixed word lists with a seeded
PRNG, so the same arguments always give the same file. One "needle" record (id 4242 by default) holds the
fact the demo asks about. Standard library only (no torch, no tokenizers).

    python3 scripts/make_demo_corpus.py --records 17000 --out build/demo/corpus.jsonl
"""
import argparse
import json
import random

FIRST = ["Alice", "Bruno", "Chen", "Dalia", "Emeka", "Freya", "Goran", "Hana", "Ivan", "Jun", "Kofi", "Lena",
         "Mateo", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Ximena",
         "Yusuf", "Zoe"]
LAST = ["Almeida", "Brandt", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen",
        "Kowalski", "Laurent", "Moreau", "Nakamura", "Okafor", "Petrov", "Quispe", "Rossi", "Schmidt", "Tanaka",
        "Usman", "Varga", "Wang", "Xu", "Yilmaz", "Zhang"]
CITIES = ["Lisbon", "Nairobi", "Osaka", "Toronto", "Krakow", "Lima", "Hanoi", "Oslo", "Cairo", "Denver",
          "Tbilisi", "Porto", "Seoul", "Quito", "Dakar", "Perth", "Riga", "Tunis", "Bergen", "Cusco"]
JOBS = ["marine biologist", "violin maker", "bridge engineer", "pastry chef", "air traffic controller",
        "glacier researcher", "bookbinder", "radio astronomer", "beekeeper", "typeface designer",
        "lighthouse keeper", "cartographer", "perfumer", "tunnel surveyor", "puppeteer"]
THINGS = ["a red kayak", "three tortoises", "an antique telescope", "a collection of maps", "a vintage tram ticket",
          "a greenhouse of orchids", "a chess set carved from walnut", "a sailboat named Petrel",
          "two hundred vinyl records", "a blue bicycle"]
HOBBIES = ["plays the cello", "climbs volcanoes", "bakes sourdough", "restores clocks", "collects meteorites",
           "writes haiku", "races pigeons", "studies moss", "builds kites", "translates old letters"]


def record(rng: random.Random, i: int) -> str:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    return (f"Record {i}: {name} was born in {rng.randint(1940, 2005)} in {rng.choice(CITIES)} and works as a "
            f"{rng.choice(JOBS)} in {rng.choice(CITIES)}. {name.split()[0]} owns {rng.choice(THINGS)}, "
            f"{rng.choice(HOBBIES)} on weekends and has visited {rng.randint(2, 60)} countries. "
            f"Badge number {rng.randint(10000, 99999)}, office floor {rng.randint(1, 40)}.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=17000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--needle-id", type=int, default=4242)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with open(args.out, "w", encoding="utf-8") as f:
        for i in range(args.records):
            text = record(rng, i)
            if i == args.needle_id:
                text = (f"Record {i}: The secret launch code of the Aurora project is TANGERINE-7, kept by "
                        f"Hana Ito, the lighthouse keeper of Bergen.")
            f.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
