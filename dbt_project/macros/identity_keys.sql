{#
    Keys that identity resolution matches on (see the identity_resolution doc block).

    A domain: lower case, without scheme, `www.`, path or trailing dot, so that
    `https://www.Acme.com/about` and `acme.com` agree.
#}
{% macro normalized_domain(expression) -%}
    nullif(
        regexp_replace(
            regexp_replace(
                regexp_replace(regexp_replace(lower(trim({{ expression }})), '^[a-z][a-z0-9+.-]*://', ''), '^www\.', ''),
                '[/?#:].*$', ''
            ),
            '\.$', ''
        ),
        ''
    )
{%- endmacro %}

{#
    The domain of an email address, normalized as above.
#}
{% macro email_domain(expression) -%}
    {{ normalized_domain("nullif(split_part(" ~ expression ~ ", '@', 2), '')") }}
{%- endmacro %}

{#
    A company name for matching: lower case, letters and digits only, without a leading
    "the" or a trailing legal form, so that `The Acme Group, Inc.` and `ACME GROUP` agree.
#}
{% macro normalized_company_name(expression) -%}
    nullif(
        regexp_replace(
            regexp_replace(
                trim(regexp_replace(lower({{ expression }}), '[^a-z0-9]+', ' ', 'g')),
                '^the |( (inc|llc|ltd|limited|gmbh|corp|corporation|co|plc|sa|ag|bv|srl|oy|ab))+$', '', 'g'
            ),
            ' ', '', 'g'
        ),
        ''
    )
{%- endmacro %}
