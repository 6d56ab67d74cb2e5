"""Every command and option in cleartext against the real server, in both output formats."""

from __future__ import annotations

import json

from catalog import SERVICE_NAME
from client.commands import EXIT_NOT_SERVING, EXIT_OK, EXIT_RPC_ERROR
from service.config import Settings
from tests.client.conftest import Cli
from tests.client.servers import RepeatingTokenServicer, many_products, serve
from tests.servers import in_process


def test_get_prints_the_product(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "get", "1")
    assert result.code == EXIT_OK
    assert result.err == ""
    assert result.lines == [
        "id:          1",
        "name:        Laptop Pro 16",
        "description: High-performance laptop",
        "price:       1299.99",
        "category:    electronics",
        "in stock:    yes",
    ]


def test_get_json_is_the_protobuf_json_mapping(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "get", "3", "--json")
    assert result.code == EXIT_OK
    assert json.loads(result.out) == {
        "id": "3",
        "name": "Standing Desk",
        "description": "Adjustable standing desk",
        "price": 599.99,
        "category": "furniture",
        "inStock": False,  # printed although it is the default value
    }


def test_json_is_accepted_before_the_target_too(cli: Cli, seed_target: str) -> None:
    result = cli("--json", "--plaintext", seed_target, "get", "1")
    assert json.loads(result.out)["name"] == "Laptop Pro 16"


def test_target_may_come_before_the_options(cli: Cli, seed_target: str) -> None:
    result = cli(seed_target, "--plaintext", "--timeout", "5", "get", "2")
    assert result.code == EXIT_OK
    assert "Wireless Mouse" in result.out


def test_unknown_product_is_not_found(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "get", "nope")
    assert result.code == EXIT_RPC_ERROR
    assert result.out == ""
    assert result.err == "NOT_FOUND: product nope not found\n"


def test_empty_id_is_invalid_argument(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "get", "")
    assert result.code == EXIT_RPC_ERROR
    assert result.err.startswith("INVALID_ARGUMENT: ")
    assert len(result.err.splitlines()) == 1


def test_list_prints_a_table_and_a_total(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "list")
    assert result.code == EXIT_OK
    assert result.lines[0].split() == ["ID", "NAME", "CATEGORY", "PRICE", "IN", "STOCK"]
    assert [line.split()[0] for line in result.lines[1:-1]] == ["1", "2", "3", "4", "5"]
    assert "Standing Desk" in result.lines[3]
    assert result.lines[3].split()[-2:] == ["599.99", "no"]
    assert result.lines[-1] == "5 of 5 products"


def test_list_filters_by_category(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "list", "--category", "furniture", "--json")
    assert result.code == EXIT_OK
    (page,) = [json.loads(line) for line in result.lines]
    assert [p["id"] for p in page["products"]] == ["3", "5"]
    assert page["totalCount"] == 2
    assert page["nextPageToken"] == ""


def test_list_one_page_tells_how_to_get_the_next(cli: Cli, seed_target: str) -> None:
    first = cli("--plaintext", seed_target, "list", "--page-size", "2")
    assert [line.split()[0] for line in first.lines[1:-1]] == ["1", "2"]
    summary = first.lines[-1]
    assert summary.startswith("2 of 5 products; next page: --page-token ")
    token = summary.rsplit(" ", 1)[1]

    second = cli("--plaintext", seed_target, "list", "--page-size", "2", "--page-token", token, "--json")
    (page,) = [json.loads(line) for line in second.lines]
    assert [p["id"] for p in page["products"]] == ["3", "4"]
    assert page["nextPageToken"]


def test_list_all_over_many_pages(cli: Cli) -> None:
    with in_process(Settings(port=0), many_products(250)) as server:
        target = f"localhost:{server.port}"
        table = cli("--plaintext", target, "list", "--page-size", "7", "--all")
        pages = cli("--plaintext", target, "list", "--page-size", "7", "--all", "--json")
        books = cli("--plaintext", target, "list", "--category", "books", "--page-size", "10", "--all")
    assert table.code == EXIT_OK
    ids = [line.split()[0] for line in table.lines[1:-1]]
    assert ids == [f"p{i:04d}" for i in range(250)]
    assert table.lines[-1] == "250 of 250 products"

    documents = [json.loads(line) for line in pages.lines]
    assert len(documents) == 36  # 35 full pages of 7 and one of 5: one JSON object per page
    assert [len(d["products"]) for d in documents] == [7] * 35 + [5]
    assert all(d["nextPageToken"] for d in documents[:-1])
    assert documents[-1]["nextPageToken"] == ""

    book_ids = [line.split()[0] for line in books.lines[1:-1]]
    assert book_ids == [f"p{i:04d}" for i in range(0, 250, 3)]
    assert books.lines[-1] == "84 of 84 products"


def test_list_all_stops_on_a_repeated_page_token(cli: Cli) -> None:
    servicer = RepeatingTokenServicer()
    with serve(servicer) as server:
        result = cli("--plaintext", server.target, "list", "--all")
    assert result.code == EXIT_RPC_ERROR
    assert servicer.calls == 2  # the first page, and the one whose token repeats
    assert "repeated page token 'again'" in result.err
    assert len(result.err.splitlines()) == 1


def test_bad_page_token_is_invalid_argument(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "list", "--page-token", "not-a-token")
    assert result.code == EXIT_RPC_ERROR
    assert result.err.startswith("INVALID_ARGUMENT: ")


def test_search_prints_matches(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "search", "desk")
    assert result.code == EXIT_OK
    assert [line.split()[0] for line in result.lines[1:-1]] == ["3", "5"]
    assert result.lines[-1] == "2 products match 'desk'"


def test_search_max_and_json(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "search", "DESK", "--max", "1", "--json")
    assert result.code == EXIT_OK
    assert [json.loads(line)["id"] for line in result.lines] == ["3"]


def test_counts_agree_with_their_nouns_at_one(cli: Cli, seed_target: str) -> None:
    one_match = cli("--plaintext", seed_target, "search", "mouse")
    assert one_match.lines[-1] == "1 product matches 'mouse'"
    with in_process(Settings(port=0), many_products(1)) as server:
        target = f"localhost:{server.port}"
        listing = cli("--plaintext", target, "list")
        smoke = cli("--plaintext", target, "smoke")
    assert listing.lines[-1] == "1 of 1 product"
    assert "PASS list-pages: 1 product over 1 page agrees with total_count" in smoke.lines


def test_search_without_matches(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "search", "zebra")
    assert result.code == EXIT_OK
    assert result.lines == ["0 products match 'zebra'"]


def test_empty_search_is_invalid_argument(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "search", "")
    assert result.code == EXIT_RPC_ERROR
    assert result.err.startswith("INVALID_ARGUMENT: ")


def test_categories_counts_the_products_of_each(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "categories")
    assert result.code == EXIT_OK
    assert [line.split() for line in result.lines] == [
        ["electronics", "3"],
        ["furniture", "2"],
        ["2", "categories,", "5", "products"],
    ]
    as_json = cli("--plaintext", seed_target, "categories", "--json")
    assert [json.loads(line) for line in as_json.lines] == [
        {"category": "electronics", "products": 3},
        {"category": "furniture", "products": 2},
    ]


def test_categories_reads_every_page(cli: Cli) -> None:
    # 2500 products: three pages of at most 1000, the server's largest.
    with in_process(Settings(port=0), many_products(2500)) as server:
        result = cli("--plaintext", f"localhost:{server.port}", "categories")
    assert result.code == EXIT_OK
    assert result.lines == [
        "books                       834",
        "tools                       1666",
        "2 categories, 2500 products",
    ]


def test_health_serving(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "health")
    assert result.code == EXIT_OK
    assert [line.split() for line in result.lines] == [
        ["(server)", "SERVING"],
        [SERVICE_NAME, "SERVING"],
    ]
    as_json = cli("--plaintext", seed_target, "health", "--json")
    assert [json.loads(line) for line in as_json.lines] == [
        {"service": "", "status": "SERVING"},
        {"service": SERVICE_NAME, "status": "SERVING"},
    ]


def test_health_not_serving_exits_3(cli: Cli) -> None:
    # The real server before its catalog is installed: up, but NOT_SERVING on both names.
    with in_process(Settings(port=0)) as server:
        result = cli("--plaintext", f"localhost:{server.port}", "health")
    assert result.code == EXIT_NOT_SERVING
    assert [line.split() for line in result.lines] == [
        ["(server)", "NOT_SERVING"],
        [SERVICE_NAME, "NOT_SERVING"],
    ]


def test_health_of_an_unregistered_name_exits_3(cli: Cli) -> None:
    with serve(health_names=("",)) as server:
        result = cli("--plaintext", server.target, "health")
    assert result.code == EXIT_NOT_SERVING
    assert [line.split() for line in result.lines] == [
        ["(server)", "SERVING"],
        [SERVICE_NAME, "SERVICE_UNKNOWN"],
    ]
