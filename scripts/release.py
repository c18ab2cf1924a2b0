"""Builds a release into dist/<version>/ and snapshots its templates into releases/<version>/.

  scripts/release.sh                                   # build, package, checksum, snapshot
  scripts/release.sh --s3-bucket BUCKET --region R     # ... and sam package + sam publish (an AWS account)
  scripts/release.sh --snapshot-only                   # only releases/<version>/{template,stackset}.yaml

The version is Cargo.toml's. Before anything is built the release must be consistent: template.yaml's
CodeVersion and SAR SemanticVersion, deploy/stackset.yaml's CodeVersion and CHANGELOG.md's newest
heading all name it, deploy/stackset.yaml is generated from template.yaml, and no change since an
earlier release's snapshot is one CloudFormation refuses on a stack update (see incompatibilities()).

dist/<version>/ (git-ignored) then holds:
  cloud-app-security-connector-<version>-<arch>.zip   the bootstrap, `cargo lambda build --release`
                                                       (x86_64 always; arm64 when the aarch64 std is installed)
  template-<arch>.yaml   template.yaml with CodeUri -> that zip and Architectures -> <arch>:
                         `sam deploy --template-file dist/<version>/template-<arch>.yaml --guided`
  stackset.yaml          the StackSet template (its function is arm64: roll it out with the arm64 zip)
  artifact-bucket.yaml, README.md, LICENSE, CHANGELOG.md
  SHA256SUMS             `sha256sum -c SHA256SUMS` inside the directory

releases/<version>/{template,stackset}.yaml are committed: the next release's compatibility test
(tests/python/test_release.py) compares its templates with them.
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))

import stackset_template  # noqa: E402

NAME = "cloud-app-security-connector"
SAM = os.path.join(REPO, "template.yaml")
STACKSET = os.path.join(REPO, "deploy", "stackset.yaml")
ARTIFACT_BUCKET = os.path.join(REPO, "deploy", "artifact-bucket.yaml")
CHANGELOG = os.path.join(REPO, "CHANGELOG.md")
RELEASES = os.path.join(REPO, "releases")
SAR_TYPES = os.path.join(REPO, "tests", "python", "sar_supported_types.txt")
SAR_KEY = "AWS::ServerlessRepo::Application"
# cargo-lambda's flag and the Rust target whose standard library it needs, per Lambda architecture.
ARCHES = {"x86_64": ("--x86-64", "x86_64-unknown-linux-gnu"), "arm64": ("--arm64", "aarch64-unknown-linux-gnu")}
# provided.al2023's glibc: a binary needing a newer symbol version fails to start on Lambda.
LAMBDA_GLIBC = (2, 34)
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
CHANGELOG_HEADING = re.compile(r"^## \[([^\]]+)\]", re.MULTILINE)


# --- what the release is -------------------------------------------------------------------------

def load(path):
    from cfnlint.decode import cfn_yaml

    with open(path) as f:
        return stackset_template.plain(cfn_yaml.loads(f.read(), path))


def cargo_package():
    with open(os.path.join(REPO, "Cargo.toml"), "rb") as f:
        return tomllib.load(f)["package"]


def cargo_lock_version(name):
    with open(os.path.join(REPO, "Cargo.lock"), "rb") as f:
        return next(p["version"] for p in tomllib.load(f)["package"] if p["name"] == name)


def changelog_versions(path=CHANGELOG):
    """The release headings of CHANGELOG.md, newest first ("Unreleased" is not a release)."""
    with open(path) as f:
        return [v for v in CHANGELOG_HEADING.findall(f.read()) if v.lower() != "unreleased"]


def semver_key(version):
    m = SEMVER.match(version)
    if not m:
        raise ValueError(f"not a semantic version: {version!r}")
    return tuple(int(part) for part in m.groups()[:3])


def code_version(template):
    return template["Resources"]["Connector"]["Properties"].get("CodeVersion")


def consistency_errors():
    """Everything that must name this release, and doesn't."""
    version = cargo_package()["version"]
    sam, stackset = load(SAM), load(STACKSET)
    named = {
        "Cargo.lock": cargo_lock_version(cargo_package()["name"]),
        "template.yaml CodeVersion": code_version(sam),
        "template.yaml SemanticVersion": sam.get("Metadata", {}).get(SAR_KEY, {}).get("SemanticVersion"),
        "deploy/stackset.yaml CodeVersion": code_version(stackset),
        "CHANGELOG.md newest heading": (changelog_versions() or [None])[0],
    }
    errors = [f"{where} says {value!r}, Cargo.toml says {version!r}" for where, value in named.items()
              if value != version]
    with open(STACKSET) as f:
        if f.read() != stackset_template.render():
            errors.append("deploy/stackset.yaml is stale: run .venv/bin/python scripts/stackset_template.py")
    return version, errors


def snapshots():
    """Released versions with a template snapshot, oldest first."""
    if not os.path.isdir(RELEASES):
        return []
    found = [v for v in os.listdir(RELEASES) if SEMVER.match(v)
             and all(os.path.isfile(os.path.join(RELEASES, v, f)) for f in ("template.yaml", "stackset.yaml"))]
    return sorted(found, key=semver_key)


# --- what CloudFormation refuses on a stack update -------------------------------------------------

CUSTOM_TYPES = ("Custom::", "AWS::CloudFormation::CustomResource")
FUNCTION_TYPES = ("AWS::Lambda::Function", "AWS::Serverless::Function")
# Function properties whose change replaces the function, so its ARN (the ServiceToken) changes.
FUNCTION_REPLACED_BY = ("FunctionName", "PackageType")


def is_custom(resource_type):
    return resource_type.startswith(CUSTOM_TYPES[0]) or resource_type == CUSTOM_TYPES[1]


def referenced(node):
    """Logical ids an expression refers to (Ref, Fn::GetAtt, ${X} and ${X.Attr} in Fn::Sub)."""
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value.split(".")[0])
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text) if "::" not in m}
                if isinstance(value, list) and len(value) > 1:
                    found |= referenced(value[1])
            else:
                found |= referenced(value)
    elif isinstance(node, list):
        for value in node:
            found |= referenced(value)
    return found


def incompatibilities(old, new):
    """What in `new` CloudFormation refuses (or that fails the update) on a stack deployed from
    `old`; each a sentence. Counted from 0.3.0, the first release whose templates are snapshots:
    - the custom resource's ServiceToken changes ("Modifying service token is not allowed"): its
      expression, or the function it names is replaced (a FunctionName appears, changes or goes;
      a PackageType change) or goes;
    - a resource's Type changes under the same logical id ("Update of resource type is not
      permitted");
    - the custom resource's logical id or type goes (the update would delete the connector);
    - a parameter without a default is removed, or one without a default is added (every stack's
      update then fails without a value);
    - an exported output is removed or its export renamed (refused while another stack imports it).
    """
    problems = []
    old_r, new_r = old.get("Resources", {}), new.get("Resources", {})
    for lid, resource in old_r.items():
        if lid in new_r and new_r[lid].get("Type") != resource.get("Type"):
            problems.append(f"resource {lid}: Type {resource.get('Type')} -> {new_r[lid].get('Type')} "
                            "(CloudFormation does not update a resource's type)")
    for lid, resource in old_r.items():
        if not is_custom(resource.get("Type", "")):
            continue
        if lid not in new_r or new_r[lid].get("Type") != resource["Type"]:
            if lid not in new_r:
                problems.append(f"custom resource {lid} ({resource['Type']}) is gone: the update would delete the "
                                "connector")
            continue
        old_token = resource.get("Properties", {}).get("ServiceToken")
        new_token = new_r[lid].get("Properties", {}).get("ServiceToken")
        if old_token != new_token:
            problems.append(f"custom resource {lid}: ServiceToken {old_token!r} -> {new_token!r} "
                            "(Modifying service token is not allowed)")
            continue
        for fid in sorted(referenced(old_token)):
            before, after = old_r.get(fid), new_r.get(fid)
            if before is None or before.get("Type") not in FUNCTION_TYPES:
                continue
            if after is None:
                problems.append(f"function {fid}, {lid}'s ServiceToken, is gone")
                continue
            for prop in FUNCTION_REPLACED_BY:
                was = before.get("Properties", {}).get(prop)
                now = after.get("Properties", {}).get(prop)
                if was != now:
                    problems.append(f"function {fid}: {prop} {was!r} -> {now!r} replaces the function, so {lid}'s "
                                    "ServiceToken changes (Modifying service token is not allowed)")
    old_p, new_p = old.get("Parameters", {}), new.get("Parameters", {})
    for name, definition in old_p.items():
        if name not in new_p and "Default" not in definition:
            problems.append(f"parameter {name} (no default) is removed: every stack was given a value for it")
    for name, definition in new_p.items():
        if name not in old_p and "Default" not in definition:
            problems.append(f"parameter {name} is new and has no default: every existing stack's update needs a value")
    old_o, new_o = old.get("Outputs", {}), new.get("Outputs", {})
    for name, output in old_o.items():
        if "Export" not in output:
            continue
        if name not in new_o:
            problems.append(f"output {name} is exported and removed (refused while another stack imports it)")
        elif new_o[name].get("Export", {}).get("Name") != output["Export"].get("Name"):
            problems.append(f"output {name}: its export name changes (refused while another stack imports it)")
    return problems


def compatibility_errors(version, include_own=False):
    """Incompatibilities of the current templates with every earlier release's snapshot (and this
    release's own, with include_own)."""
    errors = []
    current = {"template.yaml": load(SAM), "stackset.yaml": load(STACKSET)}
    for released in snapshots():
        if semver_key(released) > semver_key(version) or (released == version and not include_own):
            continue
        for name, template in current.items():
            for problem in incompatibilities(load(os.path.join(RELEASES, released, name)), template):
                errors.append(f"{name} since {released}: {problem}")
    return errors


# --- the Serverless Application Repository --------------------------------------------------------

def sam_resource_types(path=SAM):
    """Every resource of the SAM template after the SAM transform: {logical id: type}."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = load(path)
    for resource in template["Resources"].values():  # the transform wants an S3 URI, not a directory
        if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in resource.get("Properties", {}):
            resource["Properties"]["CodeUri"] = "s3://example-bucket/bootstrap.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1"))
    out = translator.translate(template, parameter_values={}, get_managed_policy_map=lambda: {})
    return {lid: r["Type"] for lid, r in out["Resources"].items()}


def sar_accepted_types(path=SAR_TYPES):
    with open(path) as f:
        return {line.split("#")[0].strip() for line in f if line.split("#")[0].strip()}


def sar_unaccepted_types(path=SAM):
    """Types of the transformed template not in the cited list of types SAR accepts ({type: [ids]})."""
    accepted = sar_accepted_types()
    missing = {}
    for lid, resource_type in sam_resource_types(path).items():
        if resource_type not in accepted and not is_custom(resource_type):
            missing.setdefault(resource_type, []).append(lid)
    return missing


# --- building ---------------------------------------------------------------------------------------

def run(cmd, **kwargs):
    print("    $ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, cwd=REPO, **kwargs)


def installed_targets():
    try:
        out = subprocess.run(["rustup", "target", "list", "--installed"], capture_output=True, text=True, check=True)
        return set(out.stdout.split())
    except (OSError, subprocess.CalledProcessError):
        return set()


def build_zip(arch, dest):
    flag, _ = ARCHES[arch]
    # Cargo.toml's [package.metadata.lambda.build] keeps the release profile exactly as the tests
    # build it (panic unwinding, no cargo-lambda settings); --locked: the committed Cargo.lock.
    run(["cargo", "lambda", "build", "--release", flag, "--locked", "--output-format", "zip"])
    shutil.copyfile(os.path.join(REPO, "target", "lambda", "bootstrap", "bootstrap.zip"), dest)


def glibc_needed(zip_path):
    """The newest GLIBC_x.y symbol version the bootstrap in the zip needs, or None."""
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(zip_path) as z:
            z.extract("bootstrap", tmp)
        try:
            out = subprocess.run(["objdump", "-T", os.path.join(tmp, "bootstrap")], capture_output=True, text=True,
                                 check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
    versions = {tuple(int(x) for x in m) for m in re.findall(r"GLIBC_(\d+)\.(\d+)", out)}
    return max(versions) if versions else None


def packaged_template(text, zip_name, arch):
    """template.yaml for a built zip: CodeUri -> the zip (next to the template), Architectures ->
    arch, no `sam build` metadata (there is nothing to build). Text edits, so the comments stay; a
    line that changed shape is an error, not a silently unchanged template."""
    edits = [
        (r"^      CodeUri: \.$", f"      CodeUri: {zip_name}"),
        (r"^      Architectures: \[arm64\]$", f"      Architectures: [{arch}]"),
        (r"^      BuildMethod: rust-cargolambda\n", ""),
    ]
    for pattern, replacement in edits:
        text, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if n != 1:
            sys.exit(f"template.yaml: expected one line matching {pattern!r}, found {n}: update scripts/release.py")
    header = (f"# Release package: template.yaml with the function's code in {zip_name} ({arch}).\n"
              "#   sam deploy --template-file <this file> --guided\n")
    return header + text


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def snapshot(version):
    target = os.path.join(RELEASES, version)
    os.makedirs(target, exist_ok=True)
    shutil.copyfile(SAM, os.path.join(target, "template.yaml"))
    shutil.copyfile(STACKSET, os.path.join(target, "stackset.yaml"))
    return [os.path.join(target, "template.yaml"), os.path.join(target, "stackset.yaml")]


def rel(path):
    return os.path.relpath(path, REPO)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--s3-bucket", help="publish: sam package into this bucket, then sam publish (needs an AWS account)")
    p.add_argument("--region", help="the region of --s3-bucket and of the SAR application")
    p.add_argument("--snapshot-only", action="store_true",
                   help="only write releases/<version>/{template,stackset}.yaml (no build)")
    args = p.parse_args(argv)

    version, errors = consistency_errors()
    errors += compatibility_errors(version)
    print(f"==> release {version}")
    if errors:
        for e in errors:
            print(f"    {e}", file=sys.stderr)
        sys.exit(f"release {version}: not consistent (above); nothing built")

    if args.snapshot_only:
        for path in snapshot(version):
            print(f"    snapshot {rel(path)}")
        return

    dist = os.path.join(REPO, "dist", version)
    shutil.rmtree(dist, ignore_errors=True)
    os.makedirs(dist)
    skipped, notes = [], []
    targets = installed_targets()
    built = []
    for arch, (_, triple) in ARCHES.items():
        zip_name = f"{NAME}-{version}-{arch}.zip"
        if triple not in targets:
            skipped.append(f"skipped {arch}: the {triple} standard library is not installed (rustup target list "
                           f"--installed); build it on an {arch} machine with scripts/release.sh (cargo lambda build "
                           f"--release {ARCHES[arch][0]}), or here after `rustup target add {triple}`")
            continue
        print(f"==> {arch}: cargo lambda build --release {ARCHES[arch][0]}")
        build_zip(arch, os.path.join(dist, zip_name))
        glibc = glibc_needed(os.path.join(dist, zip_name))
        if glibc and glibc > LAMBDA_GLIBC:
            sys.exit(f"{zip_name}: the bootstrap needs GLIBC_{glibc[0]}.{glibc[1]}, provided.al2023 has "
                     f"{LAMBDA_GLIBC[0]}.{LAMBDA_GLIBC[1]}: it would not start on Lambda")
        if glibc:
            notes.append(f"{zip_name}: needs glibc {glibc[0]}.{glibc[1]} (provided.al2023: "
                         f"{LAMBDA_GLIBC[0]}.{LAMBDA_GLIBC[1]})")
        with open(SAM) as f:
            text = packaged_template(f.read(), zip_name, arch)
        with open(os.path.join(dist, f"template-{arch}.yaml"), "w") as f:
            f.write(text)
        built.append(arch)
    if not built:
        sys.exit("no architecture could be built")
    for arch in built:
        run([os.path.join(REPO, ".venv", "bin", "cfn-lint"), rel(os.path.join(dist, f"template-{arch}.yaml"))])
    for source, name in ((STACKSET, "stackset.yaml"), (ARTIFACT_BUCKET, "artifact-bucket.yaml"),
                         (os.path.join(REPO, "README.md"), "README.md"), (os.path.join(REPO, "LICENSE"), "LICENSE"),
                         (CHANGELOG, "CHANGELOG.md")):
        shutil.copyfile(source, os.path.join(dist, name))
    if "arm64" not in built:
        notes.append("stackset.yaml's function is arm64: roll it out with an arm64 zip (rollout.sh --zip), "
                     "which this release directory does not hold")

    unaccepted = sar_unaccepted_types()
    if unaccepted:
        notes.append("SAR: not in the cited list of accepted types (tests/python/sar_supported_types.txt): "
                     + ", ".join(f"{t} ({', '.join(ids)})" for t, ids in sorted(unaccepted.items()))
                     + " — confirm on the live list before publishing")
    if not args.s3_bucket:
        skipped.append("skipped publish: no --s3-bucket (sam package + sam publish to the Serverless Application "
                       "Repository need an AWS account)")
    elif "arm64" not in built:
        skipped.append("skipped publish: the arm64 zip was not built (the published application is the shipped "
                       "arm64 template)")
    else:
        region = ["--region", args.region] if args.region else []
        packaged = os.path.join(dist, "packaged.yaml")
        print("==> sam package and sam publish (arm64)")
        run(["sam", "package", "--template-file", rel(os.path.join(dist, "template-arm64.yaml")),
             "--s3-bucket", args.s3_bucket, "--output-template-file", rel(packaged), *region])
        run(["sam", "publish", "--template", rel(packaged), "--semantic-version", version, *region])

    files = sorted(f for f in os.listdir(dist) if f != "SHA256SUMS")
    sums = {f: sha256(os.path.join(dist, f)) for f in files}
    with open(os.path.join(dist, "SHA256SUMS"), "w") as out:
        out.writelines(f"{sums[f]}  {f}\n" for f in files)
    snapped = snapshot(version)

    print(f"==> release {version}: {rel(dist)}/ (check with: cd {rel(dist)} && sha256sum -c SHA256SUMS)")
    for f in files:
        print(f"    {f:<48} {os.path.getsize(os.path.join(dist, f)):>10} bytes  sha256 {sums[f]}")
    print(f"    {'SHA256SUMS':<48} {os.path.getsize(os.path.join(dist, 'SHA256SUMS')):>10} bytes")
    for path in snapped:
        print(f"    snapshot {rel(path)}")
    for line in notes:
        print(f"    note: {line}")
    for line in skipped:
        print(f"    {line}")


if __name__ == "__main__":
    main()
