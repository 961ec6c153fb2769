#!/usr/bin/env bash
# Makes deliberation.zip: a SEDA 2.2 SIP with one PDF, its SHA-512 computed by sha512sum.
# Usage: bash examples/make_sip.sh   (needs sha512sum and python3)
set -euo pipefail
mkdir -p sip/Content
printf '%%PDF-1.4\n%% Délibération du conseil municipal\n%%%%EOF\n' > "sip/Content/délibération 2026-01.pdf"
DIGEST=$(sha512sum "sip/Content/délibération 2026-01.pdf" | cut -d' ' -f1)
SIZE=$(stat -c %s "sip/Content/délibération 2026-01.pdf")
cat > sip/manifest.xml <<XML
<?xml version="1.0" encoding="UTF-8"?>
<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.2">
  <Date>2026-11-29T10:00:00</Date>
  <MessageIdentifier>DELIB-2026-001</MessageIdentifier>
  <CodeListVersions/>
  <DataObjectPackage>
    <DataObjectGroup id="GOT1">
      <BinaryDataObject id="BDO1">
        <DataObjectVersion>BinaryMaster_1</DataObjectVersion>
        <Uri>Content/délibération 2026-01.pdf</Uri>
        <MessageDigest algorithm="SHA-512">$DIGEST</MessageDigest>
        <Size>$SIZE</Size>
        <FormatIdentification><MimeType>application/pdf</MimeType></FormatIdentification>
        <FileInfo><Filename>délibération 2026-01.pdf</Filename></FileInfo>
      </BinaryDataObject>
    </DataObjectGroup>
    <DescriptiveMetadata>
      <ArchiveUnit id="AU1">
        <Content>
          <DescriptionLevel>Item</DescriptionLevel>
          <Title>Délibération du conseil municipal n° 2026-01</Title>
        </Content>
        <DataObjectReference><DataObjectGroupReferenceId>GOT1</DataObjectGroupReferenceId></DataObjectReference>
      </ArchiveUnit>
    </DescriptiveMetadata>
    <ManagementMetadata><OriginatingAgencyIdentifier>SECRETARIAT-GENERAL</OriginatingAgencyIdentifier></ManagementMetadata>
  </DataObjectPackage>
  <ArchivalAgency><Identifier>ARCHIVES-COMMUNALES</Identifier></ArchivalAgency>
  <TransferringAgency><Identifier>SECRETARIAT-GENERAL</Identifier></TransferringAgency>
</ArchiveTransfer>
XML
(cd sip && python3 -m zipfile -c ../deliberation.zip manifest.xml Content)
