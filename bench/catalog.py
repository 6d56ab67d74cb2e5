"""A synthetic catalog of N products, the same for the same N and seed, written as a CATALOG_PATH file.

Names and descriptions are drawn from a fixed vocabulary with a little non-ASCII text, so a search for a
common word matches thousands of products, a rare word a handful, and a word outside the vocabulary none.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from catalog.catalog_pb2 import Product

CATEGORIES = (
    "electronics",
    "furniture",
    "kitchen",
    "garden",
    "toys",
    "books",
    "sports",
    "office",
    "clothing",
    "tools",
)
BRANDS = (
    "Acme", "Northwind", "Contoso", "Fabrikam", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay",
    "Wayne", "Stark", "Tyrell", "Cyberdyne", "Soylent", "Wonka", "Gringotts", "Monarch", "Oscorp",
    "Café Bleu", "Größenwahn", "İstanbul Craft", "Øresund", "Señor Tech", "Ærø Works",
)  # fmt: skip
ADJECTIVES = (
    "compact", "wireless", "ergonomic", "portable", "adjustable", "premium", "classic", "modern",
    "rugged", "silent", "smart", "foldable", "heavy-duty", "lightweight", "vintage", "deluxe",
    "eco-friendly", "stainless", "waterproof", "rechargeable", "minimalist", "oversized", "mini",
    "professional", "handmade", "organic", "magnetic", "solar", "digital", "analog",
)  # fmt: skip
NOUNS = {
    "electronics": ("laptop", "monitor", "mouse", "keyboard", "headphones", "speaker", "charger", "webcam",
                    "router", "tablet", "earbuds", "projector"),
    "furniture": ("desk", "chair", "bookshelf", "sofa", "stool", "wardrobe", "lamp", "bench", "cabinet"),
    "kitchen": ("kettle", "blender", "toaster", "skillet", "knife set", "cutting board", "espresso maker",
                "mixing bowl", "spatula"),
    "garden": ("hose", "rake", "planter", "shovel", "sprinkler", "wheelbarrow", "pruner", "bird feeder"),
    "toys": ("puzzle", "robot kit", "building blocks", "kite", "plush bear", "train set", "yo-yo"),
    "books": ("cookbook", "novel", "atlas", "notebook", "sketchbook", "field guide", "dictionary"),
    "sports": ("yoga mat", "dumbbell", "tennis racket", "helmet", "water bottle", "jump rope", "backpack"),
    "office": ("stapler", "whiteboard", "paper shredder", "label maker", "desk organizer", "pen set"),
    "clothing": ("jacket", "sneakers", "scarf", "rain coat", "hoodie", "wool socks", "sun hat"),
    "tools": ("drill", "hammer", "screwdriver set", "wrench", "tape measure", "level", "saw", "multimeter"),
}  # fmt: skip
PHRASES = (
    "built to last", "with a two-year warranty", "for home and office", "easy to clean",
    "ships in recycled packaging", "a customer favourite", "now in new colours", "tested for durability",
    "designed in Zürich", "with a soft-touch finish", "for everyday use", "includes a carrying case",
    "energy efficient", "fits small spaces", "great as a gift", "with a non-slip base", "made from bamboo",
    "assembled in minutes", "dishwasher safe", "with USB-C charging", "rated five stars by reviewers",
    "perfect for beginners", "loved by professionals", "quiet operation", "with spare parts included",
)  # fmt: skip


def generate(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """`count` products in the catalog file's JSON form; ids are "p000000", "p000001", ..."""
    rng = random.Random(seed)  # noqa: S311  # reproducible test data, not secrets
    width = max(6, len(str(count - 1)))
    products = []
    for index in range(count):
        category = rng.choice(CATEGORIES)
        brand = rng.choice(BRANDS)
        adjective = rng.choice(ADJECTIVES)
        noun = rng.choice(NOUNS[category])
        model = f"{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{rng.randint(1, 999)}"
        phrases = rng.sample(PHRASES, rng.randint(1, 3))
        description = f"A {rng.choice(ADJECTIVES)} {noun} by {brand}, " + ", ".join(phrases) + "."
        products.append(
            {
                "id": f"p{index:0{width}d}",
                "name": f"{brand} {adjective.capitalize()} {noun.capitalize()} {model}",
                "description": description if rng.random() > 0.02 else "",  # a few have none
                "price": round(rng.uniform(1, 2000), 2),
                "category": category,
                "inStock": rng.random() < 0.8,
            }
        )
    return products


def generate_products(count: int, seed: int = 1) -> list[Product]:
    """The same products as `generate`, as protobuf messages (what the server holds after loading)."""
    return [
        Product(**{("in_stock" if key == "inStock" else key): value for key, value in item.items()})
        for item in generate(count, seed)
    ]


def write_catalog(path: Path, count: int, seed: int = 1) -> Path:
    """Write `count` generated products to `path` as a catalog file and return the path."""
    path.write_text(json.dumps({"products": generate(count, seed)}, ensure_ascii=False), encoding="utf-8")
    return path
