{#
    Fails with every row for which the SQL expression is not true (NULL counts as a
    failure, so a missing input cannot silently pass).
#}
{% test expression_is_true(model, expression, column_name=none) %}
    select *
    from {{ model }}
    where not coalesce(({{ expression }}), false)
{% endtest %}
