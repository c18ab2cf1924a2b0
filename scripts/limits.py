"""Limits that the templates, the names test and the organization rollout share.

A service-managed StackSet names each account's stack StackSet-<set name>-<uuid>; every explicit
resource name in deploy/stackset.yaml must fit its service's limit for the longest set name the
rollout accepts, and every name in template.yaml for a 128-character SAM stack name
(tests/python/test_names.py resolves them all). scripts/rollout.py validates --stack-set-name
against STACK_SET_NAME_MAX and STACK_SET_NAME_PATTERN.
"""

import re

# CloudFormation's limit on a template passed as TemplateBody (CreateStackSet, UpdateStackSet): the
# rollout sends deploy/stackset.yaml as it is, so the file must fit (scripts/stackset_template.py
# refuses to write a larger one; tests/python/test_templates.py checks it).
TEMPLATE_BODY_MAX = 51_200
# CloudFormation's own limit on a stack name.
STACK_NAME_MAX = 128
# The longest StackSet name the rollout accepts. Its instances' stacks are then at most
# 9 + 45 + 1 + 36 = 91 characters: room under STACK_NAME_MAX, and every name the templates derive
# from the stack name fits its service (tests/python/test_names.py).
STACK_SET_NAME_MAX = 45
# CloudFormation's pattern for a StackSet name, bounded by STACK_SET_NAME_MAX.
STACK_SET_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,%d}" % (STACK_SET_NAME_MAX - 1))
STACK_SET_INSTANCE_UUID = "00000000-0000-0000-0000-000000000000"


def stack_set_instance_stack_name(set_name):
    """The name CloudFormation gives a service-managed StackSet's stack in each account."""
    return f"StackSet-{set_name}-{STACK_SET_INSTANCE_UUID}"


def stack_set_name_problem(name):
    """Why the rollout must refuse a --stack-set-name, or None."""
    if len(name) > STACK_SET_NAME_MAX:
        return (f"--stack-set-name {name!r} is {len(name)} characters; at most {STACK_SET_NAME_MAX} "
                f"(each account's stack is named StackSet-<set name>-<uuid>)")
    if not STACK_SET_NAME_PATTERN.fullmatch(name):
        return f"--stack-set-name {name!r}: a letter, then letters, digits and hyphens"
    return None


# template.yaml parameters that name one account (an ARN with an account id in it, or a bucket
# name, which is global): one value cannot serve every account of a StackSet. deploy/stackset.yaml
# has the form on the right instead (scripts/stackset_template.py), resolved in each account; the
# rollout must refuse the name on the left (--parameter NAME=...) and point to the right one.
ACCOUNT_SPECIFIC_PARAMETERS = {
    "PermissionsBoundaryArn": "PermissionsBoundaryName",
    "SecretKmsKeyArn": "SecretKmsKeyAlias",
    "TrailKmsKeyArn": "TrailKmsKeyAlias",
    "AlarmTopicArn": "AlarmTopicName",
    "TrailBucketAccessLogBucket": "TrailBucketAccessLogBucketPrefix",
}
# What the rollout must refuse for the StackSet (the set is one value for every account).
REFUSED_STACK_SET_PARAMETERS = tuple(ACCOUNT_SPECIFIC_PARAMETERS)
# template.yaml parameters whose ARN names the organization's security account, not the account the
# stack is in: the fleet's status bus and the one operator principal that may read the keys
# (docs/fleet.md). The same value serves every account, so the StackSet takes them as they are and
# the rollout passes them on.
ORGANIZATION_WIDE_PARAMETERS = ("StatusBusArn", "StatusReaderPrincipalArn")
