"""The shared bbox option and the boxes pushed filters imply (used by the point-cloud and raster formats)."""

from __future__ import annotations

import math

import pytest
from pyspark.sql.datasource import EqualTo, GreaterThan, GreaterThanOrEqual, In, LessThan

from pyspark_dataplug.errors import OptionError
from pyspark_dataplug.formats._spatial import Box, box_from_filters, parse_bbox


def test_parse_bbox() -> None:
    assert parse_bbox("1,2,3,4") == Box(1, 2, -math.inf, 3, 4, math.inf)
    assert parse_bbox(" 1, 2, 0, 3, 4, 9 ") == Box(1, 2, 0, 3, 4, 9)
    for bad in ("1,2,3", "a,b,c,d", "5,0,1,1"):
        with pytest.raises(OptionError, match="bad bbox"):
            parse_bbox(bad)
    assert Box.from_json(parse_bbox("1,2,3,4").to_json()) == parse_bbox("1,2,3,4")


def test_box_from_filters_keeps_every_possible_match() -> None:
    points = {"x": "x", "y": "y", "z": "z"}
    box = box_from_filters([GreaterThanOrEqual(("x",), 3), LessThan(("y",), 5.5), EqualTo(("z",), 1),
                            In(("x",), (1, 2)), GreaterThan(("intensity",), 9)], points)
    assert box == Box(3, -math.inf, 1, math.inf, 5.5, 1)
    assert box.intersects(3, 0, 1, 3, 0, 1) and not box.intersects(0, 0, 0, 2.9, 9, 9)
    assert box_from_filters([GreaterThan(("intensity",), 9)], points) is None
    tiles = {"xmin": "x", "xmax": "x", "ymin": "y", "ymax": "y"}
    box = box_from_filters([GreaterThanOrEqual(("xmin",), 10), LessThan(("xmax",), 20)], tiles)
    assert box.intersects(15, 0, 0, 25, 1, 0) and not box.intersects(0, 0, 0, 9, 1, 0)
