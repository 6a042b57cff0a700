; Inno Setup script: per-user install of LM Studio Tray, no administrator rights needed.
;   pyinstaller --noconfirm installers\windows\lmstudio-tray.spec
;   iscc /DAppVersion=0.1.0 installers\windows\lmstudio-tray.iss   -> dist\lmstudio-tray-setup-0.1.0.exe
; Silent install for tests: lmstudio-tray-setup.exe /VERYSILENT /SUPPRESSMSGBOXES [/TASKS="autostart"]

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "LM Studio Tray"
#define AppExe "lmstudio-trayw.exe"
#define CliExe "lmstudio-tray.exe"
; Must match the AppUserModelID the app sets for its notifications, or Windows drops its toasts.
#define AppUserModelID "io.github.lmstudio-tray"
; Same value name the app's own `autostart enable` writes, so installer, CLI and tray share one switch.
#define RunValue "lmstudio-tray"

[Setup]
AppId={{08EE8DBB-FCC8-4687-9E79-02D8FB5D04A6}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=lmstudio-tray contributors
AppPublisherURL=https://github.com/lmstudio-tray/lmstudio-tray
; Per user: %LOCALAPPDATA%\Programs, HKCU, no UAC prompt.
PrivilegesRequired=lowest
DefaultDirName={localappdata}\Programs\{#AppName}
DisableProgramGroupPage=yes
DisableDirPage=auto
UsePreviousTasks=yes
OutputDir=..\..\dist
OutputBaseFilename=lmstudio-tray-setup-{#AppVersion}
SetupIconFile=..\..\assets\app-icon\lmstudio-tray.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
; Close a running tray before files are replaced or removed.
CloseApplications=yes
RestartApplications=no
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible

[Tasks]
; Opt-in: unchecked unless the user ticks it (or passes /TASKS="autostart").
Name: "autostart"; Description: "Start {#AppName} when I sign in"; GroupDescription: "Startup:"; Flags: unchecked

[Files]
Source: "..\..\dist\lmstudio-tray\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
; A Start-menu shortcut carrying the AppUserModelID: what makes toast notifications work for an
; unpackaged desktop app.
Name: "{userprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; Parameters: "run"; \
  WorkingDir: "{app}"; IconFilename: "{app}\{#AppExe}"; AppUserModelID: "{#AppUserModelID}"; \
  Comment: "System-tray companion for LM Studio"

[Registry]
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; \
  ValueName: "{#RunValue}"; ValueData: """{app}\{#AppExe}"" run"; Flags: uninsdeletevalue; Tasks: autostart

[Run]
Filename: "{app}\{#AppExe}"; Parameters: "run"; Description: "Start {#AppName} now"; \
  Flags: nowait postinstall skipifsilent

[UninstallRun]
; Stop the tray, then let the app remove a Run value the user may have added later from its menu.
Filename: "{sys}\taskkill.exe"; Parameters: "/F /IM {#AppExe}"; Flags: runhidden; RunOnceId: "StopTray"
Filename: "{app}\{#CliExe}"; Parameters: "autostart disable"; Flags: runhidden waituntilterminated; \
  RunOnceId: "DisableAutostart"

[UninstallDelete]
; PyInstaller's folder may hold files written after installation (__pycache__); settings live in
; %LOCALAPPDATA%\lmstudio-tray and are kept.
Type: filesandordirs; Name: "{app}"
