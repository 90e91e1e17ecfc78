"""GA4GH service-info for a TES 1.1 service."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ServiceType(BaseModel):
    """The GA4GH service type: ``org.ga4gh:tes:1.1.0``."""

    group: str = "org.ga4gh"
    artifact: str = "tes"
    version: str = "1.1.0"


class Organization(BaseModel):
    """The organization that runs this service."""

    name: str
    url: str


class ServiceInfo(BaseModel):
    """``tesServiceInfo``."""

    id: str
    name: str
    type: ServiceType = Field(default_factory=ServiceType)
    description: str | None = None
    organization: Organization
    contactUrl: str | None = None
    documentationUrl: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    environment: str | None = None
    version: str
    storage: list[str] = Field(default_factory=list)
    tesResources_backend_parameters: list[str] = Field(default_factory=list)
