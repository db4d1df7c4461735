"""The Feature Store online store (sagemaker-featurestore-runtime) for the moto emulator.

moto 5.2.5 implements feature groups but not their runtime API: PutRecord answers 404 "Not
yet implemented", so no record could be written to an online store on the emulator. This
module adds PutRecord, GetRecord and DeleteRecord with the rules AWS applies (API reference,
"Amazon SageMaker Feature Store Runtime"): the group must exist; every feature name must be
one of its definitions; the record identifier and the event time are required; the event
time is ISO-8601 (yyyy-MM-dd'T'HH:mm:ssZ or with .SSS) or epoch seconds as the group declares;
per identifier the online store keeps the record with the latest event time (an older
PutRecord leaves it unchanged). It also gives ResolvedOutputS3Uri AWS's shape
(`.../<account>/sagemaker/<region>/offline-store/...`; moto drops the `sagemaker` segment).

Installed by `tools.emulator.serve` before the server starts; never loaded by callers.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Final

_MOTO_RESOLVED_URI: Final = re.compile(
    r"/(?P<account>\d{12})/(?P<region>[a-z]{2}(-gov)?-[a-z]+-\d)/offline-store/"
)
_EVENT_TIME_STRING: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")
# (account, region, group name) -> record identifier -> (event epoch, record)
_ONLINE: dict[tuple[str, str, str], dict[str, tuple[float, list[dict[str, str]]]]] = {}


def _event_epoch(value: str, feature_type: str) -> float | None:
    if feature_type == "Fractional":
        try:
            return float(value)
        except ValueError:
            return None
    if not _EVENT_TIME_STRING.match(value):
        return None
    stamp = value.replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).astimezone(UTC).timestamp()


def emulate_feature_store_runtime() -> None:
    from moto.core.responses import BaseResponse  # noqa: PLC0415
    from moto.sagemaker import urls  # noqa: PLC0415
    from moto.sagemaker.models import FeatureGroup, sagemaker_backends  # noqa: PLC0415

    def error(status: int, code: str, message: str) -> tuple[int, dict[str, Any], str]:
        # moto takes the status from the headers it is given, not from the tuple.
        headers = {"x-amzn-ErrorType": code, "Content-Type": "application/json", "status": status}
        return status, headers, json.dumps({"__type": code, "message": message})

    class FeatureStoreRuntimeResponse(BaseResponse):
        def __init__(self) -> None:
            super().__init__(service_name="sagemaker-featurestore-runtime")

        def _group(self) -> Any:
            name = self.path.split("/")[2]
            backend = sagemaker_backends[self.current_account][self.region]
            for group in backend.feature_groups.values():
                if group.feature_group_name == name:
                    return group
            return None

        def put_record(self) -> Any:
            group = self._group()
            if group is None:
                return error(404, "ResourceNotFound", "Resource Not Found: feature group")
            record = json.loads(self.body or "{}").get("Record") or []
            types = {d["FeatureName"]: d["FeatureType"] for d in group.feature_definitions}
            values = {}
            for feature in record:
                name = feature.get("FeatureName")
                if name not in types:
                    return error(400, "ValidationException", f"Unknown feature name {name}")
                values[name] = feature.get("ValueAsString")
            identifier = values.get(group.record_identifier_feature_name)
            event = values.get(group.event_time_feature_name)
            if identifier is None or event is None:
                return error(
                    400,
                    "ValidationException",
                    "The record identifier and the event time feature are required",
                )
            epoch = _event_epoch(event, types[group.event_time_feature_name])
            if epoch is None:
                return error(400, "ValidationException", f"Invalid event time {event}")
            store = _ONLINE.setdefault(
                (self.current_account, self.region, group.feature_group_name), {}
            )
            known = store.get(identifier)
            if known is None or epoch >= known[0]:
                store[identifier] = (epoch, record)
            return 200, {"Content-Type": "application/json"}, "{}"

        def get_record(self) -> Any:
            group = self._group()
            if group is None:
                return error(404, "ResourceNotFound", "Resource Not Found: feature group")
            identifier = self.querystring.get("RecordIdentifierValueAsString", [None])[0]
            store = _ONLINE.get((self.current_account, self.region, group.feature_group_name), {})
            found = store.get(str(identifier))
            body = {"Record": found[1]} if found else {}
            return 200, {"Content-Type": "application/json"}, json.dumps(body)

        def delete_record(self) -> Any:
            group = self._group()
            if group is None:
                return error(404, "ResourceNotFound", "Resource Not Found: feature group")
            identifier = self.querystring.get("RecordIdentifierValueAsString", [None])[0]
            store = _ONLINE.get((self.current_account, self.region, group.feature_group_name), {})
            store.pop(str(identifier), None)
            return 200, {"Content-Type": "application/json"}, "{}"

    urls.url_paths["{0}/FeatureGroup/(?P<name>[^/]+)$"] = FeatureStoreRuntimeResponse.dispatch

    initialize = FeatureGroup.__init__

    def initialize_as_aws(self: FeatureGroup, *args: Any, **kwargs: Any) -> None:
        initialize(self, *args, **kwargs)
        storage = (self.offline_store_config or {}).get("S3StorageConfig")
        if isinstance(storage, dict) and isinstance(storage.get("ResolvedOutputS3Uri"), str):
            storage["ResolvedOutputS3Uri"] = _MOTO_RESOLVED_URI.sub(
                r"/\g<account>/sagemaker/\g<region>/offline-store/",
                storage["ResolvedOutputS3Uri"],
            )

    FeatureGroup.__init__ = initialize_as_aws  # type: ignore[method-assign]
