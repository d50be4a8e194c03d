"""Statistics of reader studies as pure functions on arrays and data frames (no ORM inside a formula),
and the dashboards, exports and report built on them."""
